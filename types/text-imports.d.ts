// Text imports (`import x from "./f.yaml" with { type: "text" }`): Bun and Deno both support them, and
// `bun build --compile` embeds the file. This tells TypeScript what they give.
declare module "*.yaml" {
  const text: string;
  export default text;
}
