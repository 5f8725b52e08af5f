/**
 * Server-side printing: `meta.k8s.io/v1 Table` answers for clients that ask
 * with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what
 * `kubectl get` does). The server, not kubectl, renders the cells, including
 * ages (`5m`), as the real apiserver does; kubectl only lays them out.
 *
 * Custom resources get their CRD's `additionalPrinterColumns` (after Name),
 * built-in kinds the columns their real printers have.
 *
 * @example
 * ```ts
 * import { humanDuration } from "./table.ts";
 * console.log(humanDuration(90_000), humanDuration(3_600_000 * 30)); // 90s 30h
 * ```
 * @module
 */
import { compileJsonPath, type JsonPath } from "./jsonpath.ts";
import { isRecord, type JsonMap, type KubeObject, type PrinterColumn, type ResourceType } from "./types.ts";

/** How much of each object a row carries (`?includeObject=`). */
export type IncludeObject = "None" | "Metadata" | "Object";

/** True when the Accept header asks for a Table (kubectl asks for v1 first, v1beta1 second, JSON last). */
export function wantsTable(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(",").some((m) => /(^|;)\s*as=Table\s*(;|$)/.test(m) && /g=meta\.k8s\.io/.test(m));
}

/** `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, which every AGE column uses. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.trunc(hours / 24)}d` : `${Math.trunc(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const d = Math.trunc(hours / 24) % 365;
    return d === 0 ? `${Math.trunc(hours / 24 / 365)}y` : `${Math.trunc(hours / 24 / 365)}y${d}d`;
  }
  return `${Math.trunc(hours / 24 / 365)}y`;
}

/** Age of an RFC 3339 timestamp as the printers show it; `<unknown>` when missing or unparsable. */
function since(timestamp: unknown, now: Date): string {
  if (typeof timestamp !== "string" || timestamp === "") return "<unknown>";
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now.getTime() - t);
}

/** Go's `json.Marshal` for printer output: sorted keys, no spaces, HTML-safe escapes. */
function goJson(v: unknown): string {
  const sorted = (x: unknown): unknown =>
    Array.isArray(x) ? x.map(sorted) : isRecord(x) ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sorted(x[k])])) : x;
  return JSON.stringify(sorted(v)).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
}

/** A printer-column value for a `string` column: text as is, maps and lists as JSON (like kubectl's JSONPath printer). */
function text(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === null || v === undefined) return "null";
  if (typeof v === "object") return goJson(v);
  return String(v);
}

/** `cellForJSONValue` of the CRD table convertor: typed cells, `null` when the value does not fit the column type. */
function typedCell(type: string, v: unknown, now: Date): unknown {
  switch (type) {
    case "integer":
      return typeof v === "number" ? Math.trunc(v) : null;
    case "number":
      return typeof v === "number" ? v : null;
    case "boolean":
      return typeof v === "boolean" ? v : null;
    case "date":
      if (typeof v !== "string") return null;
      return Number.isNaN(Date.parse(v)) ? "<invalid>" : since(v, now);
    default:
      return null;
  }
}

interface Column {
  readonly name: string;
  readonly type: string;
  readonly format?: string;
  readonly description: string;
  readonly priority?: number;
  readonly cell: (o: KubeObject, now: Date) => unknown;
}

const NAME: Column = {
  name: "Name",
  type: "string",
  format: "name",
  description: "Name must be unique within a namespace. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
  cell: (o) => o.metadata.name ?? "",
};

const AGE: Column = {
  name: "Age",
  type: "string",
  description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
  cell: (o, now) => since(o.metadata.creationTimestamp, now),
};

const get = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((cur, k) => (isRecord(cur) ? cur[k] : undefined), o);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const count = (v: unknown): number => (isRecord(v) ? Object.keys(v).length : 0);
const hostPort = (ip: string, port: unknown) => (ip.includes(":") ? `[${ip}]:${String(port)}` : `${ip}:${String(port)}`);

function col(name: string, description: string, cell: Column["cell"], priority = 0, type = "string"): Column {
  return { name, type, description, cell, ...(priority > 0 ? { priority } : {}) };
}

function serviceExternalIp(o: KubeObject): string {
  const type = get(o, "spec", "type");
  const externalIps = list(get(o, "spec", "externalIPs")).map(String);
  if (type === "ClusterIP" || type === "NodePort" || type === undefined) return externalIps.length > 0 ? externalIps.join(",") : "<none>";
  if (type === "ExternalName") return String(get(o, "spec", "externalName") ?? "");
  if (type !== "LoadBalancer") return "<unknown>";
  // A sorted set, untruncated: the apiserver renders tables "wide" (kubectl only hides priority columns).
  const ingress = [
    ...new Set(
      list(get(o, "status", "loadBalancer", "ingress"))
        .map((i) => (isRecord(i) ? String(i.ip || i.hostname || "") : ""))
        .filter((s) => s !== ""),
    ),
  ].sort();
  const all = [...ingress, ...externalIps];
  return all.length > 0 ? all.join(",") : "<pending>";
}

function servicePorts(o: KubeObject): string {
  const ports = list(get(o, "spec", "ports")).filter(isRecord);
  if (ports.length === 0) return "<none>";
  return ports.map((p) => (p.nodePort ? `${String(p.port)}:${String(p.nodePort)}/${String(p.protocol ?? "TCP")}` : `${String(p.port)}/${String(p.protocol ?? "TCP")}`)).join(",");
}

function endpointsCell(o: KubeObject): string {
  const subsets = list(o.subsets).filter(isRecord);
  if (subsets.length === 0) return "<none>";
  const shown: string[] = [];
  let total = 0;
  for (const s of subsets) {
    const ips = list(s.addresses).filter(isRecord).map((a) => String(a.ip ?? ""));
    const ports = list(s.ports).filter(isRecord);
    const entries = ports.length === 0 ? ips : ports.flatMap((p) => ips.map((ip) => hostPort(ip, p.port)));
    total += entries.length;
    for (const e of entries) if (shown.length < 3) shown.push(e);
  }
  return total > 3 ? `${shown.join(",")} + ${total - 3} more...` : shown.join(",");
}

function sliceList(values: string[]): string {
  if (values.length === 0) return "<unset>";
  return values.length > 3 ? `${values.slice(0, 3).join(",")} + ${values.length - 3} more...` : values.join(",");
}

function eventColumns(): Column[] {
  const firstSeen = (o: KubeObject, now: Date) => since(o.firstTimestamp ?? o.eventTime, now);
  const lastSeen = (o: KubeObject, now: Date) => since(o.lastTimestamp ?? o.eventTime, now);
  const n = (o: KubeObject) => (typeof o.count === "number" && o.count > 0 ? o.count : 1);
  return [
    col("Last Seen", "Time of the last occurrence", (o, now) => {
      const series = o.series;
      if (isRecord(series)) return `${since(series.lastObservedTime, now)} (x${String(series.count)} over ${firstSeen(o, now)})`;
      return n(o) > 1 ? `${lastSeen(o, now)} (x${n(o)} over ${firstSeen(o, now)})` : lastSeen(o, now);
    }),
    col("Type", "Type of this event", (o) => o.type ?? ""),
    col("Reason", "Short, machine understandable string that gives the reason for the transition into the object's current status", (o) => o.reason ?? ""),
    col("Object", "The object that this event is about", (o) => {
      const kind = String(get(o, "involvedObject", "kind") ?? "").toLowerCase();
      const name = get(o, "involvedObject", "name");
      return typeof name === "string" && name !== "" ? `${kind}/${name}` : kind;
    }),
    col("Subobject", "The subobject that this event is about", (o) => get(o, "involvedObject", "fieldPath") ?? "", 1),
    col("Source", "The component reporting this event", (o) => {
      const component = get(o, "source", "component") ?? o.reportingComponent ?? "";
      const host = get(o, "source", "host") ?? o.reportingInstance ?? "";
      return host ? `${String(component)}, ${String(host)}` : String(component);
    }, 1),
    col("Message", "A human-readable description of the status of this operation", (o) => String(o.message ?? "").trim()),
    col("First Seen", "The first time this event was seen", firstSeen, 1),
    col("Count", "The number of times this event has occurred", n, 1, "integer"),
    col("Name", "Name of the event", (o) => o.metadata.name ?? "", 1),
  ];
}

/** Columns of the built-in kinds (from the real printers in `pkg/printers/internalversion`). */
function builtinColumns(kind: string): Column[] {
  switch (kind) {
    case "Namespace":
      return [NAME, col("Status", "The status of the namespace", (o) => get(o, "status", "phase") ?? ""), AGE];
    case "Service":
      return [
        NAME,
        col("Type", "The type of the service", (o) => get(o, "spec", "type") ?? ""),
        col("Cluster-IP", "The cluster IP of the service", (o) => list(get(o, "spec", "clusterIPs"))[0] ?? get(o, "spec", "clusterIP") ?? "<none>"),
        col("External-IP", "The external IP of the service", serviceExternalIp),
        col("Port(s)", "The ports of the service", servicePorts),
        AGE,
        col("Selector", "The label selector of the service", (o) => {
          const s = get(o, "spec", "selector");
          return isRecord(s) && Object.keys(s).length > 0 ? Object.entries(s).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${String(v)}`).join(",") : "<none>";
        }, 1),
      ];
    case "Endpoints":
      return [NAME, col("Endpoints", "Endpoints of the service", endpointsCell), AGE];
    case "EndpointSlice":
      return [
        NAME,
        col("AddressType", "The IP protocol for this slice", (o) => o.addressType ?? ""),
        col("Ports", "The ports of this slice", (o) => sliceList(list(o.ports).filter(isRecord).map((p) => String(p.port ?? "")))),
        col("Endpoints", "The endpoints of this slice", (o) =>
          sliceList(list(o.endpoints).filter(isRecord).flatMap((e) => list(e.addresses).map(String))),
        ),
        AGE,
      ];
    case "Secret":
      return [NAME, col("Type", "The type of the secret", (o) => o.type ?? ""), col("Data", "The number of keys in the secret", (o) => count(o.data), 0, "integer"), AGE];
    case "ConfigMap":
      return [NAME, col("Data", "The number of keys in the config map", (o) => count(o.data) + count(o.binaryData), 0, "integer"), AGE];
    case "Pod":
      return [
        NAME,
        col("Ready", "The aggregate readiness state of this pod for accepting traffic.", (o) => {
          const statuses = list(get(o, "status", "containerStatuses")).filter(isRecord);
          return `${statuses.filter((s) => s.ready === true).length}/${list(get(o, "spec", "containers")).length}`;
        }),
        col("Status", "The aggregate status of the containers in this pod.", (o) => get(o, "status", "reason") ?? get(o, "status", "phase") ?? ""),
        col("Restarts", "The number of times the containers in this pod have been restarted", (o) =>
          list(get(o, "status", "containerStatuses")).filter(isRecord).reduce((n, s) => n + (typeof s.restartCount === "number" ? s.restartCount : 0), 0),
        ),
        AGE,
        col("IP", "The IP address assigned to the pod", (o) => get(o, "status", "podIP") ?? "<none>", 1),
        col("Node", "The node the pod is scheduled on", (o) => get(o, "spec", "nodeName") ?? "<none>", 1),
      ];
    case "Event":
      return eventColumns();
    default:
      // The default table convertor (used for CRDs too): name and creation time as RFC 3339.
      return [
        NAME,
        {
          name: "Created At",
          type: "date",
          description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
          cell: (o) => String(o.metadata.creationTimestamp ?? ""),
        },
      ];
  }
}

function customColumns(columns: readonly PrinterColumn[] | undefined): Column[] {
  const defs: readonly PrinterColumn[] = columns ?? [{ name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" }];
  return [
    NAME,
    ...defs.map((c): Column => {
      let path: JsonPath | undefined;
      try {
        path = compileJsonPath(c.jsonPath);
      } catch {
        path = undefined; // an unparsable path shows as an empty cell, like an evaluation error on a cluster
      }
      return {
        name: c.name,
        type: c.type,
        ...(c.format !== undefined ? { format: c.format } : {}),
        description: c.description ?? "Custom resource definition column (in JSONPath format): " + c.jsonPath,
        ...(c.priority ? { priority: c.priority } : {}),
        cell: (o, now) => {
          const found = path ? path(o) : [];
          if (found.length === 0) return null;
          const v = found[0];
          return c.type === "string" ? text(v) : typedCell(c.type, v, now);
        },
      };
    }),
  ];
}

/** Builds the Table for objects of one type (as the client sees them: already converted for events.k8s.io). */
export function toTable(
  type: ResourceType,
  objects: readonly KubeObject[],
  options: { includeObject?: IncludeObject; resourceVersion?: string; now?: Date } = {},
): JsonMap {
  const now = options.now ?? new Date();
  const include = options.includeObject ?? "Metadata";
  const columns = type.custom ? customColumns(type.printerColumns) : builtinColumns(type.kind);
  // events.k8s.io events print like core/v1 ones; their cells read core field names.
  const asCore = type.toStorage;
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: options.resourceVersion !== undefined ? { resourceVersion: options.resourceVersion } : {},
    columnDefinitions: columns.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? "",
      description: c.description,
      priority: c.priority ?? 0,
    })),
    rows: objects.map((o) => {
      const source = asCore ? asCore(o) : o;
      const row: JsonMap = { cells: columns.map((c) => c.cell(source, now) ?? null) };
      if (include === "Object") row.object = o;
      if (include === "Metadata") row.object = { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
      return row;
    }),
  };
}

/** The PartialObjectMetadata view (`as=PartialObjectMetadata`), for clients that only want metadata. */
export function partialObjectMetadata(o: KubeObject): KubeObject {
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
}
