/** Decoding the protobuf bodies that `kubectl create` sends. */
import { describe, expect, test } from "bun:test";
import { decodeKubernetesProtobuf, ProtobufError } from "./protobuf.ts";

describe("decodeKubernetesProtobuf", () => {
  test("decodes the Namespace body kubectl 1.32 sends for `kubectl create namespace firewall` (captured with -v=8)", () => {
    const body = Buffer.from(
      "6b3873000a0f0a02763112094e616d657370616365122" + "00a180a086669726577616c6c12001a0022002a00320038004200120" + "01a020a001a002200",
      "hex",
    );
    expect(decodeKubernetesProtobuf(body)).toEqual({ apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" }, spec: {}, status: {} });
  });

  test("rejects bodies without the k8s\\0 prefix and kinds it does not know", () => {
    expect(() => decodeKubernetesProtobuf(Buffer.from("{}"))).toThrow(ProtobufError);
    // Unknown{typeMeta{apiVersion "v1", kind "Pod"}}
    const pod = Buffer.concat([Buffer.from("k8s\0"), Buffer.from([0x0a, 0x09, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x03, 0x50, 0x6f, 0x64])]);
    expect(() => decodeKubernetesProtobuf(pod)).toThrow(/decodes protobuf only for .*got v1\/Pod/);
  });
});
