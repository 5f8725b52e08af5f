/**
 * firewall-controller: parses flags and wires the parts together. No logic here.
 * @module
 */
import pkg from "./package.json" with { type: "json" };
import { helpText, parseFlags } from "./lib/cli/flags.ts";
import { runOnce } from "./lib/cli/once.ts";
import { writeFileAtomic } from "./lib/atomic-file.ts";
import { runCommand } from "./lib/exec.ts";
import { createLogger } from "./lib/log.ts";
import { nftClient } from "./lib/nft/client.ts";
import { tcShaper } from "./lib/tc/shaper.ts";

async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseFlags(argv);
  if (!parsed.ok) {
    process.stderr.write(`error: ${parsed.message}\n`);
    return 1;
  }
  const flags = parsed.value;
  if (flags.help) {
    process.stdout.write(helpText());
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`firewall-controller ${pkg.version}\n`);
    return 0;
  }
  const log = createLogger(flags.logLevel);
  if (!flags.once) {
    process.stderr.write("error: watching the API server is not built yet; run with --once --manifests PATH\n");
    return 1;
  }
  return runOnce(flags, {
    nft: nftClient(flags.nft, runCommand),
    shaper: tcShaper({ tc: flags.tc, ip: flags.ip, exec: runCommand }),
    writeFile: writeFileAtomic,
    log,
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
  });
}

process.exitCode = await main(process.argv.slice(2));
