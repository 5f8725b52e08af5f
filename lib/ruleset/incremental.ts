/**
 * Rendering in proportion to the change: the long-running controller renders the whole desired
 * state on every event, but only the objects that changed, and the ones their boxes overlap, are
 * layered again. The result is exactly {@link renderRuleset}'s (a property test holds them equal
 * over random sequences of changes); only the cost differs.
 *
 * Why this is exact: placing a box in layers.ts depends only on the boxes of earlier owners that
 * overlap it (and its own owner's), so the boxes of a map fall apart into groups that never meet,
 * and each group's layering is independent of the others. A change re-layers the groups that hold
 * a changed owner (its old boxes and its new), found by scanning for overlaps outward from the
 * changed boxes; everything else keeps its pieces. Maps where this does not pay (many owners
 * changed, a large group, or overlap chains deep enough to use the top layer, whose split has a
 * table-wide budget) are layered from scratch.
 *
 * Objects are recognised by identity: the desired state hands on the same parsed object while it
 * is unchanged (classification is memoised per object version), so an unchanged object costs a
 * map lookup.
 *
 * @example
 * ```ts
 * import { parseCidr } from "../api/address.ts";
 * import { IncrementalRenderer } from "./incremental.ts";
 * import { renderRuleset } from "./render.ts";
 * const cluster = parseCidr("10.0.0.0/8");
 * if (cluster.ok) {
 *   const state = { policies: [], services: [], clusterPrefixes: [cluster.value], internalPrefixes: [], privateVrf: 42 };
 *   const renderer = new IncrementalRenderer();
 *   console.log(renderer.render(state).text === renderRuleset(state).text); // true
 * }
 * ```
 * @module
 */
import type { Policy } from "../api/policy.ts";
import type { LoadBalancer } from "../api/service.ts";
import { OverlayMap } from "../overlay-map.ts";
import { ELEMENT_BUDGET } from "./budget.ts";
import { hullOfDims as hullOf, layer, overlaps } from "./layers.ts";
import type { Box, Span } from "./partition.ts";
import {
  assemble,
  cmpDims,
  type DesiredState,
  elementText,
  elementVerdict,
  keyText,
  type LayeredMap,
  layerName,
  MAP_KEYS,
  type MapKey,
  mapSpec,
  MAX_LAYERS,
  type ObjectBoxes,
  type Owner,
  policyObjectBoxes,
  primeElementsText,
  type RenderedRuleset,
  serviceKey,
  serviceObjectBoxes,
} from "./render.ts";

/** More changed objects than this in one render: rendered from scratch (a relist, a first sync). */
const MAX_CHANGED_OBJECTS = 64;
/** A group of overlapping owners larger than this: its map is layered from scratch. */
const MAX_GROUP_OWNERS = 256;

/** One owner's boxes in one map, and where it sorts among the map's owners. */
interface OwnerBoxes {
  /** Ownership order: policy name then protocol label, or namespace/name; compared as strings. */
  readonly order: string;
  /** The comment its elements carry. */
  readonly comment: string;
  readonly boxes: readonly Span[][];
  readonly hull: Span[];
}

/** One placed piece of one layer, with its key and its element's line (formatted once). */
interface Entry {
  readonly dims: readonly Span[];
  readonly owner: string;
  readonly key: string;
  readonly text: string;
  /** Ends a run of joined lines (see {@link chunkTexts}). */
  readonly cut: boolean;
}

/**
 * Owners of one map by the first dimension of their hull, to find the ones a box may overlap
 * without looking at all: narrow hulls sorted by start (a query looks back by the widest narrow
 * span ever added), wide ones always looked at.
 */
class OwnerIndex {
  readonly #narrow: { start: bigint; name: string }[] = [];
  readonly #wide = new Set<string>();
  readonly #limit: bigint;
  #maxSpan = 0n;

  constructor(family: 4 | 6) {
    this.#limit = family === 4 ? 1n << 16n : 1n << 80n;
  }

  #at(start: bigint): number {
    let lo = 0;
    let hi = this.#narrow.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.#narrow[mid] as { start: bigint }).start < start) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(name: string, o: OwnerBoxes): void {
    const [lo, hi] = o.hull[0] as Span;
    if (hi - lo > this.#limit) {
      this.#wide.add(name);
      return;
    }
    if (hi - lo > this.#maxSpan) this.#maxSpan = hi - lo;
    this.#narrow.splice(this.#at(lo), 0, { start: lo, name });
  }

  remove(name: string, o: OwnerBoxes): void {
    if (this.#wide.delete(name)) return;
    const lo = (o.hull[0] as Span)[0];
    for (let i = this.#at(lo); i < this.#narrow.length && (this.#narrow[i] as { start: bigint }).start === lo; i++) {
      if ((this.#narrow[i] as { name: string }).name === name) {
        this.#narrow.splice(i, 1);
        return;
      }
    }
  }

  /** Every owner whose hull may meet `hull` on the first dimension (and some that do not). */
  candidates(hull: readonly Span[], visit: (name: string) => void): void {
    const [lo, hi] = hull[0] as Span;
    for (let i = this.#at(lo - this.#maxSpan); i < this.#narrow.length; i++) {
      const e = this.#narrow[i] as { start: bigint; name: string };
      if (e.start > hi) break;
      visit(e.name);
    }
    for (const name of this.#wide) visit(name);
  }
}

/** One map as last rendered. Owned by the renderer and changed in place; only `map` leaves it. */
interface MapState {
  readonly owners: Map<string, OwnerBoxes>;
  readonly index: OwnerIndex;
  /** The verdict every element line was made with. */
  readonly verdict: string;
  /** Per owner, its pieces: the layer each is in, and its dims. */
  pieces: Map<string, { layer: number; dims: readonly Span[] }[]>;
  /** Per layer, its pieces sorted as the text lists them. */
  layers: Entry[][];
  /** The rendered map; its layers' element objects are handed on unchanged where a layer did not change. */
  map: LayeredMap;
  /** Overflowed or used the top layer when layered: always layered from scratch. */
  fragile: boolean;
  /** Its overlaps were too deep to render within the budget: the whole ruleset must not be applied. */
  readonly overflowed: boolean;
}

/** How one owner of one map changed: its boxes before (absent: new) and now (absent: gone). */
interface Change {
  old?: OwnerBoxes;
  now?: OwnerBoxes;
}

const meets = (a: OwnerBoxes, b: OwnerBoxes): boolean => overlaps(a.hull, b.hull) && a.boxes.some((x) => b.boxes.some((y) => overlaps(x, y)));
const byOrder = (a: readonly [string, OwnerBoxes], b: readonly [string, OwnerBoxes]) => (a[1].order < b[1].order ? -1 : a[1].order > b[1].order ? 1 : 0);

/** Index of the first entry not sorting before `dims`. */
function lowerBound(list: readonly Entry[], dims: readonly Span[]): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cmpDims((list[mid] as Entry).dims, dims) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * `list` (sorted by `cmp`, no two equal) without the entries of `gone` and with `added`, sorted:
 * a few changes are spliced in and out at their places (found by bisection), more are merged.
 */
function withChanges<T extends { readonly v: object }>(list: readonly T[], removed: readonly object[], added: readonly T[], cmp: (a: T, b: T) => number, gone: ReadonlySet<object>): T[] {
  if (removed.length + added.length > 64) return merged(list.filter((e) => !gone.has(e.v)), added, cmp);
  const out = list.slice();
  const place = (x: T): number => {
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(out[mid] as T, x) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const o of removed) {
    if (!gone.has(o)) continue;
    // Among the entries that sort alike, the one that is `o` (removed holds the other list's values too).
    const probe = { v: o } as T;
    for (let i = place(probe); i < out.length && cmp(out[i] as T, probe) === 0; i++) {
      if ((out[i] as T).v === o) {
        out.splice(i, 1);
        break;
      }
    }
  }
  for (const a of added) out.splice(place(a), 0, a);
  return out;
}

/** Merges sorted `added` into sorted `kept` (both by `cmp`). */
function merged<T>(kept: readonly T[], added: readonly T[], cmp: (a: T, b: T) => number): T[] {
  if (added.length === 0) return kept.slice();
  const out: T[] = [];
  let i = 0;
  for (const a of added.toSorted(cmp)) {
    while (i < kept.length && cmp(kept[i] as T, a) < 0) out.push(kept[i++] as T);
    out.push(a);
  }
  while (i < kept.length) out.push(kept[i++] as T);
  return out;
}

const NOTHING_CHANGED = { policies: { added: [], removed: [] }, services: { added: [], removed: [] } } as const;

const byPolicyName = (a: Policy, b: Policy) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const byServiceKey = (a: LoadBalancer, b: LoadBalancer) => (serviceKey(a) < serviceKey(b) ? -1 : serviceKey(a) > serviceKey(b) ? 1 : 0);

/**
 * Renders the desired state like {@link renderRuleset}, re-layering only what changed since its
 * last render. One instance per controller; it keeps the last render's pieces.
 */
export class IncrementalRenderer {
  #settings: string | undefined;
  /** The objects of the last render, with what each contributes (egress and ingress for a policy). */
  #objects = new Map<Policy | LoadBalancer, readonly Grouped[]>();
  /** The objects in ownership order, each with what it contributes (as in {@link #objects}). */
  #policies: { readonly v: Policy; readonly g: readonly Grouped[] }[] = [];
  #services: { readonly v: LoadBalancer; readonly g: readonly Grouped[] }[] = [];
  /** The state of the last render: a state whose `changes` are against it may be diffed by them. */
  #lastState: DesiredState | undefined;
  #maps = new Map<MapKey, MapState>();
  /** The last result, and what this render changed against it (only when every map was patched). */
  #last: RenderedRuleset | undefined;
  #delta: Map<string, { removed: [string, string][]; added: [string, string][] }> | undefined;
  /** The last {@link #update} found no object added, removed or changed. */
  #unchanged = false;
  /** Owner name → comment of the last result (handed on as its `owners`; never changed after). */
  #ownerComments: OverlayMap<string, string> | undefined;
  /** What the last {@link #update} removed and added, for patching {@link #ownerComments}; undefined after {@link #full}. */
  #ownerChanges: { removed: (readonly Grouped[])[]; added: (readonly Grouped[])[] } | undefined;
  /** Maps layered from scratch and patched in the last render (for tests and logs). */
  lastRender: { readonly scratch: number; readonly patched: number } = { scratch: 0, patched: 0 };

  /** Forgets the last render: the next one starts from scratch. */
  reset(): void {
    this.#settings = undefined;
    this.#lastState = undefined;
  }

  render(state: DesiredState): RenderedRuleset {
    // Settings other than the objects change the whole table; so does a first render.
    const settings = JSON.stringify([state.clusterPrefixes.map((c) => c.text), state.internalPrefixes.map((c) => c.text), state.privateVrf, state.logAcceptedConnections === true]);
    const overflow: string[] = [];
    const verdict = elementVerdict(state.logAcceptedConnections === true);
    let updated = false;
    try {
      updated = settings === this.#settings && this.#update(state, overflow);
    } catch {
      // Its own state may be half changed: a cache, so it is rebuilt rather than trusted.
      overflow.length = 0;
      updated = false;
    }
    if (!updated) this.#full(state, overflow, verdict);
    this.#settings = settings;
    this.#lastState = state;
    // Nothing changed (a periodic run, an event that changed nothing here): the same result, not a
    // second copy of a 6 MB text built again.
    if (updated && this.#unchanged && this.#last) {
      const same: RenderedRuleset = { ...this.#last, delta: { from: new WeakRef(this.#last), maps: new Map() } };
      this.#last = same;
      return same;
    }
    // Owner order: every policy's egress owners, then every policy's ingress owners, then services.
    const egress: Owner[] = [];
    const ingress: Owner[] = [];
    for (const { g } of this.#policies) {
      for (const o of (g[0] as Grouped).owners) egress.push(o);
      for (const o of (g[1] as Grouped).owners) ingress.push(o);
    }
    const owners = egress.concat(ingress);
    for (const { g } of this.#services) for (const o of (g[0] as Grouped).owners) owners.push(o);
    // Owner comments: the last result's, patched by what changed (owner names are unique across
    // objects); a new version, since the last result keeps its own (a copy of 20,000 entries was
    // ~12 % of an event's work at 10,000 policies).
    let comments: OverlayMap<string, string>;
    const changes = this.#ownerChanges;
    if (this.#ownerComments && changes) {
      const gone = changes.removed.flatMap((groups) => groups.flatMap((g) => g.owners.map((o) => o.chain)));
      const added = changes.added.flatMap((groups) => groups.flatMap((g) => g.owners.map((o) => [o.chain, o.comment] as const)));
      comments = this.#ownerComments.next(gone, added);
    } else {
      comments = OverlayMap.of(owners.map((o) => [o.chain, o.comment] as const));
    }
    this.#ownerComments = comments;
    this.#ownerChanges = undefined;
    const maps = Object.fromEntries(MAP_KEYS.map((k) => [k, (this.#maps.get(k) as MapState).map])) as Record<MapKey, LayeredMap>;
    // Every map that overflowed when it was last layered, changed in this render or not: an
    // incomplete ruleset must be reported as such on every render, as renderRuleset does.
    const incomplete = MAP_KEYS.filter((k) => (this.#maps.get(k) as MapState).overflowed).map((k) => (this.#maps.get(k) as MapState).map.base);
    const out = assemble(state, maps, owners, incomplete, comments);
    const from = this.#last;
    const delta = this.#delta;
    this.#last = out;
    this.#delta = undefined;
    if (!from || !delta) return out;
    const withDelta: RenderedRuleset = { ...out, delta: { from: new WeakRef(from), maps: delta } };
    this.#last = withDelta;
    return withDelta;
  }

  /** Everything from scratch. */
  #full(state: DesiredState, overflow: string[], verdict: string): void {
    this.#delta = undefined;
    this.#ownerComments = undefined;
    this.#ownerChanges = undefined;
    this.#objects = new Map();
    const perMap = new Map<MapKey, Map<string, OwnerBoxes>>(MAP_KEYS.map((k) => [k, new Map()]));
    const contribute = <T extends Policy | LoadBalancer>(o: T): { v: T; g: readonly Grouped[] } => {
      const groups = contributions(o);
      this.#objects.set(o, groups);
      for (const g of groups) for (const x of g.maps) (perMap.get(x.map) as Map<string, OwnerBoxes>).set(x.owner, x.boxes);
      return { v: o, g: groups };
    };
    this.#policies = state.policies.toSorted(byPolicyName).map(contribute);
    this.#services = state.services.toSorted(byServiceKey).map(contribute);
    for (const key of MAP_KEYS) this.#maps.set(key, scratch(key, perMap.get(key) as Map<string, OwnerBoxes>, overflow, verdict));
    this.lastRender = { scratch: MAP_KEYS.length, patched: 0 };
  }

  /** Applies the changed objects only; false when that does not pay (then {@link #full}). */
  #update(state: DesiredState, overflow: string[]): boolean {
    // What came and went: told by the state itself when it was made from the last one (the objects
    // of the last render are exactly those of that state), else found by walking all of them.
    const told = state === this.#lastState ? NOTHING_CHANGED : this.#lastState !== undefined && state.changes?.from.deref() === this.#lastState ? state.changes : undefined;
    let removed: (Policy | LoadBalancer)[];
    let addedPolicies: Policy[];
    let addedServices: LoadBalancer[];
    if (told) {
      removed = [...told.policies.removed, ...told.services.removed].filter((o) => this.#objects.has(o));
      addedPolicies = told.policies.added.filter((p) => !this.#objects.has(p));
      addedServices = told.services.added.filter((s) => !this.#objects.has(s));
    } else {
      const now = new Set<Policy | LoadBalancer>([...state.policies, ...state.services]);
      removed = [...this.#objects.keys()].filter((o) => !now.has(o));
      addedPolicies = state.policies.filter((p) => !this.#objects.has(p));
      addedServices = state.services.filter((s) => !this.#objects.has(s));
    }
    // A new value equal to one that left (its object got a new version that changes nothing here:
    // a status write, an annotation) takes the old one's place and contributes the same.
    if (removed.length > 0 && addedPolicies.length + addedServices.length > 0) {
      const left = new Map<string, Policy | LoadBalancer>();
      for (const o of removed) left.set(contentOf(o), o);
      const swap = new Map<Policy | LoadBalancer, Policy | LoadBalancer>();
      const same = (o: Policy | LoadBalancer): boolean => {
        const c = contentOf(o);
        const old = left.get(c);
        if (old === undefined) return false;
        left.delete(c);
        swap.set(old, o);
        this.#objects.set(o, this.#objects.get(old) as readonly Grouped[]);
        this.#objects.delete(old);
        return true;
      };
      addedPolicies = addedPolicies.filter((p) => !same(p));
      addedServices = addedServices.filter((x) => !same(x));
      if (swap.size > 0) {
        removed = removed.filter((o) => !swap.has(o));
        // Equal content sorts to the same place: the order stays.
        this.#policies = this.#policies.map((e) => (swap.has(e.v) ? { v: swap.get(e.v) as Policy, g: e.g } : e));
        this.#services = this.#services.map((e) => (swap.has(e.v) ? { v: swap.get(e.v) as LoadBalancer, g: e.g } : e));
      }
    }
    if (removed.length + addedPolicies.length + addedServices.length > MAX_CHANGED_OBJECTS) return false;
    this.#unchanged = removed.length + addedPolicies.length + addedServices.length === 0;

    const changes = new Map<MapKey, Map<string, Change>>();
    const change = (map: MapKey, owner: string): Change => {
      let m = changes.get(map);
      if (!m) changes.set(map, (m = new Map()));
      let c = m.get(owner);
      if (!c) m.set(owner, (c = {}));
      return c;
    };
    const ownerChanges = { removed: [] as (readonly Grouped[])[], added: [] as (readonly Grouped[])[] };
    for (const o of removed) {
      const groups = this.#objects.get(o) as readonly Grouped[];
      ownerChanges.removed.push(groups);
      for (const g of groups) for (const x of g.maps) change(x.map, x.owner).old = x.boxes;
      this.#objects.delete(o);
    }
    for (const o of [...addedPolicies, ...addedServices]) {
      const groups = contributions(o);
      ownerChanges.added.push(groups);
      this.#objects.set(o, groups);
      for (const g of groups) for (const x of g.maps) change(x.map, x.owner).now = x.boxes;
    }
    this.#ownerChanges = ownerChanges;
    const gone = new Set(removed);
    const entry = <T extends Policy | LoadBalancer>(v: T) => ({ v, g: this.#objects.get(v) as readonly Grouped[] });
    this.#policies = withChanges(this.#policies, removed, addedPolicies.map(entry), (a, b) => byPolicyName(a.v, b.v), gone);
    this.#services = withChanges(this.#services, removed, addedServices.map(entry), (a, b) => byServiceKey(a.v, b.v), gone);

    let scratched = 0;
    const delta = new Map<string, { removed: [string, string][]; added: [string, string][] }>();
    for (const [key, list] of changes) {
      const ms = this.#maps.get(key) as MapState;
      for (const [owner, c] of list) {
        if (c.old) ms.index.remove(owner, c.old);
        if (c.now) {
          ms.owners.set(owner, c.now);
          ms.index.add(owner, c.now);
        } else ms.owners.delete(owner);
        // A new object version with the very same boxes changes nothing here.
        if (c.old && c.now && sameBoxes(c.old, c.now)) list.delete(owner);
      }
      if (list.size === 0) continue;
      if (ms.fragile || !patch(key, ms, list, delta)) {
        this.#maps.set(key, scratch(key, ms.owners, overflow, ms.verdict));
        scratched++;
      }
    }
    this.#delta = scratched === 0 ? delta : undefined;
    this.lastRender = { scratch: scratched, patched: MAP_KEYS.length - scratched };
    return true;
  }
}

/** A value's content as text (kind first): equal for two values that contribute the same. */
const contents = new WeakMap<Policy | LoadBalancer, string>();
function contentOf(o: Policy | LoadBalancer): string {
  let c = contents.get(o);
  if (c === undefined) {
    c = `${"egress" in o ? "p" : "s"}${JSON.stringify(o, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))}`;
    contents.set(o, c);
  }
  return c;
}

/** What one object contributes: a policy's egress and ingress, a service's one. */
function contributions(o: Policy | LoadBalancer): readonly Grouped[] {
  if ("egress" in o) {
    const order = (i: number) => `${o.name}\u0000${i}`;
    return [grouped(policyObjectBoxes(o, "egress"), order), grouped(policyObjectBoxes(o, "ingress"), order)];
  }
  return [grouped(serviceObjectBoxes(o), () => serviceKey(o))];
}

/** Layers one map from scratch. */
function scratch(key: MapKey, owners: Map<string, OwnerBoxes>, overflow: string[], verdict: string): MapState {
  const sorted = [...owners].toSorted(byOrder);
  const boxes: Box[] = sorted.flatMap(([, o], i) => o.boxes.map((dims) => ({ dims, owner: i })));
  const report = { overflow: false };
  const layered = layer(boxes, MAX_LAYERS, ELEMENT_BUDGET.total, report);
  const { base, type, fields } = mapSpec(key);
  if (report.overflow) overflow.push(base);
  const pieces = new Map<string, { layer: number; dims: readonly Span[] }[]>();
  const layers: Entry[][] = (layered.length === 0 ? [[]] : layered).map((l, n) =>
    l.map((p) => {
      const owner = (sorted[p.owner] as [string, OwnerBoxes])[0];
      const list = pieces.get(owner) ?? [];
      list.push({ layer: n, dims: p.dims });
      pieces.set(owner, list);
      const k = keyText(p.dims, fields);
      return { dims: p.dims, owner, key: k, text: elementText(k, (owners.get(owner) as OwnerBoxes).comment, verdict), cut: isCut(k) };
    }).toSorted((a, b) => cmpDims(a.dims, b.dims))
  );
  const map: LayeredMap = { base, type, layers: layers.map((l, n) => ({ name: layerName(base, n), elements: elementsOf(l, verdict) })) };
  const index = new OwnerIndex(Number(key.at(-1)) as 4 | 6);
  for (const [name, o] of owners) index.add(name, o);
  return { owners, index, verdict, pieces, layers, map, fragile: report.overflow || layered.length >= MAX_LAYERS, overflowed: report.overflow };
}

/**
 * Re-layers only the groups of overlapping owners that hold a changed one (`ms.owners` already
 * holds the new versions); false, changing nothing, when that does not pay.
 */
function patch(key: MapKey, ms: MapState, changed: ReadonlyMap<string, Change>, delta: Map<string, { removed: [string, string][]; added: [string, string][] }>): boolean {
  // The group: owners reachable from the changed ones through overlapping boxes, old or new.
  const group = new Set<string>(changed.keys());
  const frontier: OwnerBoxes[] = [];
  for (const c of changed.values()) {
    if (c.now) frontier.push(c.now);
    if (c.old) frontier.push(c.old);
  }
  while (frontier.length > 0) {
    const f = frontier.pop() as OwnerBoxes;
    let tooMany = false;
    ms.index.candidates(f.hull, (name) => {
      const o = ms.owners.get(name) as OwnerBoxes;
      if (tooMany || group.has(name) || !meets(f, o)) return;
      group.add(name);
      if (group.size > MAX_GROUP_OWNERS) tooMany = true;
      frontier.push(o);
    });
    if (tooMany) return false;
  }

  // Layer the group's owners (as they are now) alone; it must not reach the top layer.
  const members = [...group].flatMap((n) => {
    const o = ms.owners.get(n);
    return o ? [[n, o] as const] : [];
  }).toSorted(byOrder);
  const boxes: Box[] = members.flatMap(([, o], i) => o.boxes.map((dims) => ({ dims, owner: i })));
  const report = { overflow: false };
  const layered = layer(boxes, MAX_LAYERS, ELEMENT_BUDGET.total, report);
  if (report.overflow || layered.length >= MAX_LAYERS) return false;

  const { base, type, fields } = mapSpec(key);
  const touched = new Set<number>();
  const gone = new Map<number, Map<string, string>>();
  const come = new Map<number, Map<string, string>>();
  const at = (m: Map<number, Map<string, string>>, n: number) => {
    let x = m.get(n);
    if (!x) m.set(n, (x = new Map()));
    return x;
  };
  for (const name of group) {
    for (const p of ms.pieces.get(name) ?? []) {
      const list = ms.layers[p.layer] as Entry[];
      const [e] = list.splice(lowerBound(list, p.dims), 1) as [Entry];
      at(gone, p.layer).set(e.key, e.owner);
      touched.add(p.layer);
    }
    ms.pieces.delete(name);
  }
  layered.forEach((l, n) => {
    while (ms.layers.length <= n) ms.layers.push([]);
    for (const p of l) {
      const owner = (members[p.owner] as readonly [string, OwnerBoxes])[0];
      const list = ms.layers[n] as Entry[];
      const k = keyText(p.dims, fields);
      list.splice(lowerBound(list, p.dims), 0, { dims: p.dims, owner, key: k, text: elementText(k, (ms.owners.get(owner) as OwnerBoxes).comment, ms.verdict), cut: isCut(k) });
      at(come, n).set(k, owner);
      const own = ms.pieces.get(owner);
      if (own) own.push({ layer: n, dims: p.dims });
      else ms.pieces.set(owner, [{ layer: n, dims: p.dims }]);
      touched.add(n);
    }
  });
  while (ms.layers.length > 1 && (ms.layers.at(-1) as Entry[]).length === 0) ms.layers.pop();
  // What the kernel must change: pieces that left or came, less those placed back as they were.
  for (const n of touched) {
    const g = gone.get(n) ?? new Map<string, string>();
    const c = come.get(n) ?? new Map<string, string>();
    const removed = [...g].filter(([k, o]) => c.get(k) !== o);
    const added = [...c].filter(([k, o]) => g.get(k) !== o);
    if (removed.length + added.length > 0) delta.set(layerName(base, n), { removed, added });
  }
  const before = ms.map;
  ms.map = {
    base,
    type,
    layers: ms.layers.map((l, n) => {
      const old = before.layers[n];
      return old && !touched.has(n) ? old : { name: layerName(base, n), elements: elementsOf(l, ms.verdict) };
    }),
  };
  return true;
}

function sameBoxes(a: OwnerBoxes, b: OwnerBoxes): boolean {
  if (a.order !== b.order || a.boxes.length !== b.boxes.length) return false;
  return a.boxes.every((x, i) => {
    const y = b.boxes[i] as Span[];
    return x.length === y.length && x.every((s, d) => s[0] === (y[d] as Span)[0] && s[1] === (y[d] as Span)[1]);
  });
}

/**
 * One layer's elements (key → owner) in the entries' order, filled only when first read: the
 * applier reads them only when it cannot use the render's delta, so an event does not pay for a
 * map of every element of a big map. The entries are copied (the renderer changes its own).
 */
class LazyElements extends Map<string, string> {
  #entries: readonly Entry[] | undefined;
  readonly #size: number;

  constructor(entries: readonly Entry[]) {
    super();
    this.#entries = entries.slice();
    this.#size = entries.length;
  }

  #fill(): void {
    const e = this.#entries;
    if (e === undefined) return;
    this.#entries = undefined;
    for (const x of e) super.set(x.key, x.owner);
  }

  override get size(): number {
    return this.#entries === undefined ? super.size : this.#size;
  }
  override get(key: string): string | undefined {
    this.#fill();
    return super.get(key);
  }
  override has(key: string): boolean {
    this.#fill();
    return super.has(key);
  }
  override set(key: string, value: string): this {
    this.#fill();
    return super.set(key, value);
  }
  override delete(key: string): boolean {
    this.#fill();
    return super.delete(key);
  }
  override clear(): void {
    this.#entries = undefined;
    super.clear();
  }
  override forEach(f: (value: string, key: string, map: Map<string, string>) => void, thisArg?: unknown): void {
    this.#fill();
    super.forEach(f, thisArg);
  }
  override entries(): MapIterator<[string, string]> {
    this.#fill();
    return super.entries();
  }
  override keys(): MapIterator<string> {
    this.#fill();
    return super.keys();
  }
  override values(): MapIterator<string> {
    this.#fill();
    return super.values();
  }
  override [Symbol.iterator](): MapIterator<[string, string]> {
    return this.entries();
  }

  /** The owners of the elements in their order, without filling the map. */
  *owners(): Generator<string, void, undefined> {
    const e = this.#entries;
    if (e === undefined) yield* super.values();
    else for (const x of e) yield x.owner;
  }
}

/**
 * The owner of each element of a map (one per element, in the elements' order), without filling
 * a layer's elements that were not read yet (20,000 entries at 10,000 policies).
 *
 * @example
 * ```ts
 * import { elementOwners } from "./incremental.ts";
 * console.log([...elementOwners(new Map([["10.0.0.0/8", "np.a"]]))]); // ["np.a"]
 * ```
 */
export function elementOwners(elements: ReadonlyMap<string, string>): Iterable<string> {
  return elements instanceof LazyElements ? elements.owners() : elements.values();
}

/** One layer's elements, with their text handed over. */
function elementsOf(entries: readonly Entry[], verdict: string): Map<string, string> {
  const out = new LazyElements(entries);
  primeElementsText(out, verdict, chunkTexts(entries));
  return out;
}

/**
 * A layer's element lines joined in runs, each run's text kept with the run: a change re-joins
 * the run it falls in, not the map's 20,000 lines. Runs end after an entry whose key hashes to a
 * cut (content-defined, so an element added or removed moves no boundary elsewhere); a run is
 * known again by its first entry and the very same entries after it. Joined by `,\n\t\t\t`
 * like the lines themselves.
 */
function chunkTexts(entries: readonly Entry[]): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < entries.length; i++) {
    if (!(entries[i] as Entry).cut && i !== entries.length - 1) continue;
    const first = entries[start] as Entry;
    const known = runs.get(first);
    let text: string;
    if (known && known.entries.length === i + 1 - start && known.entries.every((e, k) => e === entries[start + k])) text = known.text;
    else {
      const run = entries.slice(start, i + 1);
      text = run.map((e) => e.text).join(",\n\t\t\t");
      runs.set(first, { entries: run, text });
    }
    out.push(text);
    start = i + 1;
  }
  return out;
}

/** Joined runs by their first entry (entries are immutable: one key, owner and text each). */
const runs = new WeakMap<Entry, { readonly entries: readonly Entry[]; readonly text: string }>();

/** About one entry in 128 ends a run, by a hash of its key. */
function isCut(key: string): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h & 127) === 0;
}

/** What one object contributes, grouped by map and owner: computed once per object version. */
interface Grouped {
  readonly owners: readonly Owner[];
  readonly maps: readonly { readonly map: MapKey; readonly owner: string; readonly boxes: OwnerBoxes }[];
}

function grouped(o: ObjectBoxes, order: (owner: number) => string): Grouped {
  const by = new Map<string, { map: MapKey; owner: string; comment: string; order: string; boxes: Span[][] }>();
  for (const b of o.boxes) {
    const { chain: owner, comment } = o.owners[b.owner] as Owner;
    const k = `${b.map}\u0000${owner}`;
    let g = by.get(k);
    if (!g) by.set(k, (g = { map: b.map, owner, comment, order: order(b.owner), boxes: [] }));
    g.boxes.push(b.dims);
  }
  return { owners: o.owners, maps: [...by.values()].map((g) => ({ map: g.map, owner: g.owner, boxes: { order: g.order, comment: g.comment, boxes: g.boxes, hull: hullOf(g.boxes) } })) };
}
