/**
 * The fields of `node_uname_info`, read from `/proc/sys/kernel`, which holds
 * exactly what uname(2) returns for the reading process's UTS namespace, so a
 * fixture directory can stand in for it. `machine` comes from `kernel/arch`
 * (Linux ≥ 6.1) or else from `os.machine()`, which is uname(2)'s.
 *
 * @example
 * ```ts
 * import { readUname } from "./uname.ts";
 * const u = await readUname("/proc");
 * console.log(u.sysname); // Linux
 * ```
 * @module
 */
import { readFile } from "node:fs/promises";
import { machine } from "node:os";
import { join } from "node:path";

export interface Uname {
  readonly sysname: string;
  readonly release: string;
  readonly version: string;
  readonly machine: string;
  readonly nodename: string;
  readonly domainname: string;
}

export async function readUname(procPath: string): Promise<Uname> {
  const read = async (name: string) => (await readFile(join(procPath, "sys/kernel", name), "utf8")).replace(/\n$/, "");
  const [sysname, release, version, nodename, domainname] = await Promise.all(
    ["ostype", "osrelease", "version", "hostname", "domainname"].map(read),
  );
  const arch = await read("arch").catch(() => machine());
  return { sysname: sysname!, release: release!, version: version!, machine: arch, nodename: nodename!, domainname: domainname! };
}
