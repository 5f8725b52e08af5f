/**
 * Defaulting of built-in kinds, the part of the real apiserver's behaviour
 * that clients observe in what they read back: a Service gets a type, a
 * cluster IP and port protocols, a Namespace its phase, a Secret's
 * `stringData` turns into `data`. Status that clients may not set on create
 * is reset, as the real registries do.
 *
 * @example
 * ```ts
 * import { Defaulter } from "./defaults.ts";
 * const d = new Defaulter();
 * const svc = d.create("Service", { metadata: { name: "web" }, spec: { ports: [{ port: 80 }] } });
 * console.log(svc.spec); // { ports: [{ port: 80, protocol: "TCP", targetPort: 80 }], type: "ClusterIP", ... }
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { clone, isRecord, type JsonMap, type KubeObject } from "./types.ts";

function record(o: JsonMap, key: string): JsonMap {
  const v = o[key];
  if (isRecord(v)) return v;
  const fresh: JsonMap = {};
  o[key] = fresh;
  return fresh;
}

function setDefault(o: JsonMap, key: string, value: unknown): void {
  if (o[key] === undefined || o[key] === null) o[key] = value;
}

function defaultPortProtocols(ports: unknown): void {
  if (Array.isArray(ports)) for (const p of ports) if (isRecord(p)) setDefault(p, "protocol", "TCP");
}

export class Defaulter {
  #nextClusterIp = 1;
  #nextNodePort = 30000;

  /** A fresh object for a create: defaults applied, status reset where the registry resets it. */
  create(kind: string, object: KubeObject): KubeObject {
    const o = clone(object);
    switch (kind) {
      case "Namespace":
        // The apiserver labels every namespace with its name (used by namespace selectors).
        o.metadata.labels = { ...o.metadata.labels, "kubernetes.io/metadata.name": o.metadata.name ?? "" };
        setDefault(record(o, "spec"), "finalizers", ["kubernetes"]);
        o.status = { phase: "Active" };
        break;
      case "Service":
        this.#service(o, undefined);
        o.status = { loadBalancer: {} };
        break;
      case "Pod": {
        const spec = record(o, "spec");
        setDefault(spec, "restartPolicy", "Always");
        setDefault(spec, "dnsPolicy", "ClusterFirst");
        setDefault(spec, "terminationGracePeriodSeconds", 30);
        setDefault(spec, "schedulerName", "default-scheduler");
        o.status = { phase: "Pending", qosClass: "BestEffort" };
        break;
      }
      default:
        this.#common(kind, o);
    }
    return o;
  }

  /** Defaults for an update of the main resource; `old` is the stored object (values allocated on create are kept). */
  update(kind: string, object: KubeObject, old: KubeObject): KubeObject {
    const o = clone(object);
    switch (kind) {
      case "Namespace":
        o.metadata.labels = { ...o.metadata.labels, "kubernetes.io/metadata.name": o.metadata.name ?? "" };
        setDefault(record(o, "spec"), "finalizers", ["kubernetes"]);
        break;
      case "Service":
        this.#service(o, old);
        break;
      default:
        this.#common(kind, o);
    }
    return o;
  }

  #common(kind: string, o: KubeObject): void {
    switch (kind) {
      case "Secret": {
        setDefault(o, "type", "Opaque");
        // stringData is write-only: merged into data (base64), never stored.
        if (isRecord(o.stringData)) {
          const data = record(o, "data");
          for (const [k, v] of Object.entries(o.stringData)) data[k] = Buffer.from(String(v), "utf8").toString("base64");
        }
        delete o.stringData;
        break;
      }
      case "Endpoints":
        if (Array.isArray(o.subsets)) for (const s of o.subsets) if (isRecord(s)) defaultPortProtocols(s.ports);
        break;
      case "EndpointSlice":
        defaultPortProtocols(o.ports);
        break;
    }
  }

  #service(o: KubeObject, old: KubeObject | undefined): void {
    const spec = record(o, "spec");
    const oldSpec = old && isRecord(old.spec) ? old.spec : {};
    setDefault(spec, "type", "ClusterIP");
    setDefault(spec, "sessionAffinity", "None");
    const type = spec.type;
    if (Array.isArray(spec.ports)) {
      const oldPorts = Array.isArray(oldSpec.ports) ? oldSpec.ports.filter(isRecord) : [];
      for (const p of spec.ports) {
        if (!isRecord(p)) continue;
        setDefault(p, "protocol", "TCP");
        setDefault(p, "targetPort", p.port);
        if (type === "NodePort" || (type === "LoadBalancer" && spec.allocateLoadBalancerNodePorts !== false)) {
          // An update without nodePort keeps the allocated one, as the real registry does.
          const before = oldPorts.find((q) => q.port === p.port && (q.protocol ?? "TCP") === p.protocol)?.nodePort;
          setDefault(p, "nodePort", before ?? this.#nextNodePort++);
        }
      }
    }
    if (type === "ExternalName") return;
    if (spec.clusterIP === undefined || spec.clusterIP === "") {
      spec.clusterIP = typeof oldSpec.clusterIP === "string" && oldSpec.clusterIP !== "" ? oldSpec.clusterIP : this.#allocateClusterIp();
      if (oldSpec.clusterIPs !== undefined && spec.clusterIPs === undefined) spec.clusterIPs = clone(oldSpec.clusterIPs);
    }
    setDefault(spec, "clusterIPs", [spec.clusterIP]);
    if (spec.clusterIP !== "None") {
      setDefault(spec, "ipFamilies", [String(spec.clusterIP).includes(":") ? "IPv6" : "IPv4"]);
    } else {
      setDefault(spec, "ipFamilies", ["IPv4"]);
    }
    setDefault(spec, "ipFamilyPolicy", "SingleStack");
    setDefault(spec, "internalTrafficPolicy", "Cluster");
    if (type === "NodePort" || type === "LoadBalancer") setDefault(spec, "externalTrafficPolicy", "Cluster");
    if (type === "LoadBalancer") setDefault(spec, "allocateLoadBalancerNodePorts", true);
  }

  #allocateClusterIp(): string {
    const n = this.#nextClusterIp++;
    return `10.96.${Math.floor(n / 256) % 256}.${n % 256}`;
  }
}
