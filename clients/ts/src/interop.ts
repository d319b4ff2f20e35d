/**
 * The TypeScript (@grpc/grpc-js) runner of the interop suite: it executes every case of a case
 * file (tests/interop/) against the targets a JSON file names and prints one line per case.
 * Built by tools/interop, which places the generated code next to this folder as gen/.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  createRegistry,
  fromBinary,
  fromJson,
  toBinary,
  toJson,
  type DescMessage,
  type DescMethod,
  type JsonValue,
} from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { file_shop_catalog_v1_catalog } from "../gen/shop/catalog/v1/catalog_pb";
import { file_shop_orders_v1_orders } from "../gen/shop/orders/v1/orders_pb";
import { file_shop_orders_v2_orders } from "../gen/shop/orders/v2/orders_pb";
import { file_shop_users_v1_users } from "../gen/shop/users/v1/users_pb";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../gen/google/rpc/status_pb";

type Json = JsonValue | undefined;

interface Step {
  target: string;
  probe?: boolean;
  as?: string;
  method: string;
  request?: Json;
  deadlineMs?: number;
  expect?: {
    code?: string;
    reason?: string;
    fieldViolations?: string[];
    response?: Json;
    stream?: Json;
  };
  save?: Record<string, string>;
}

interface Case {
  id: string;
  steps: Step[];
}

/** {} plaintext, {ca} TLS with no client certificate, {ca, cert, key} mTLS as a workload. */
interface Identity {
  ca?: string;
  cert?: string;
  key?: string;
}

interface Targets {
  targets: Record<string, { address: string; probe: string; serverName?: string }>;
  identities: Record<string, Identity>;
  identity: string;
}

interface Outcome {
  code: string;
  messages: Json[];
  reason: string;
  fieldViolations: string[];
}

class CaseFailed extends Error {}

const registry = createRegistry(
  file_shop_catalog_v1_catalog,
  file_shop_orders_v1_orders,
  file_shop_orders_v2_orders,
  file_shop_users_v1_users,
  file_grpc_health_v1_health,
);

function substitute(value: Json, variables: Map<string, string>): Json {
  if (typeof value === "string") {
    return value.replace(/\$\{(\w+)\}/g, (_, name: string) => {
      const saved = variables.get(name);
      if (saved === undefined) throw new CaseFailed(`\${${name}} was never saved`);
      return saved;
    });
  }
  if (Array.isArray(value)) return value.map((item) => substitute(item, variables) as JsonValue);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, substitute(item, variables)]),
    ) as JsonValue;
  }
  return value;
}

/** Where `actual` does not match `expected` (subset of objects, `$len`), or undefined. */
function mismatch(expected: Json, actual: Json, path = "$"): string | undefined {
  const show = (v: Json) => JSON.stringify(v);
  if (expected !== null && typeof expected === "object" && !Array.isArray(expected)) {
    const keys = Object.keys(expected);
    if (keys.length === 1 && keys[0] === "$len") {
      if (!Array.isArray(actual) || actual.length !== expected.$len) {
        return `${path}: expected ${show(expected.$len)} items, got ${show(actual)}`;
      }
      return undefined;
    }
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) {
      return `${path}: expected an object, got ${show(actual)}`;
    }
    for (const key of keys.sort()) {
      if (!(key in actual)) return `${path}.${key}: missing`;
      const found = mismatch(expected[key], actual[key], `${path}.${key}`);
      if (found) return found;
    }
    return undefined;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) {
      return `${path}: expected ${expected.length} items, got ${show(actual)}`;
    }
    for (let i = 0; i < expected.length; i++) {
      const found = mismatch(expected[i], actual[i], `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  return expected === actual ? undefined : `${path}: expected ${show(expected)}, got ${show(actual)}`;
}

function pick(document: Json, dotted: string): string {
  let value: Json = document;
  for (const key of dotted.split(".")) {
    if (value === null || typeof value !== "object" || Array.isArray(value) || !(key in value)) {
      throw new CaseFailed(`no ${dotted} in ${JSON.stringify(document)}`);
    }
    value = value[key];
  }
  return String(value);
}

function lookup(path: string): DescMethod {
  const [serviceName, methodName] = path.split("/");
  const service = registry.getService(serviceName);
  const method = service?.methods.find((m) => m.name === methodName);
  if (!method) throw new CaseFailed(`no method ${path}`);
  return method;
}

/** `grpc-status-details-bin`: BadRequest field names and the ErrorInfo reason. */
function decodeDetails(metadata: grpc.Metadata | undefined, outcome: Outcome): void {
  const [raw] = metadata?.get("grpc-status-details-bin") ?? [];
  if (!(raw instanceof Buffer)) return;
  for (const detail of fromBinary(StatusSchema, raw).details) {
    const badRequest = anyUnpack(detail, BadRequestSchema);
    if (badRequest) outcome.fieldViolations.push(...badRequest.fieldViolations.map((v) => v.field));
    const info = anyUnpack(detail, ErrorInfoSchema);
    if (info) outcome.reason = info.reason;
  }
}

class Runner {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(private readonly targets: Targets) {}

  close(): void {
    for (const client of this.clients.values()) client.close();
  }

  private client(step: Step): grpc.Client {
    const target = this.targets.targets[step.target];
    if (!target) throw new CaseFailed(`the targets file has no target ${step.target}`);
    const address = step.probe ? target.probe : target.address;
    const name = step.probe ? "plaintext" : (step.as ?? this.targets.identity);
    const identity = step.probe ? {} : this.targets.identities[name];
    if (!identity) throw new CaseFailed(`the targets file has no identity ${name}`);
    const key = `${address} ${name}`;
    let client = this.clients.get(key);
    if (!client) {
      const read = (file?: string) => (file ? readFileSync(file) : null);
      const credentials = identity.ca
        ? grpc.credentials.createSsl(read(identity.ca), read(identity.key), read(identity.cert))
        : grpc.credentials.createInsecure();
      const options = target.serverName
        ? { "grpc.ssl_target_name_override": target.serverName }
        : {};
      client = new grpc.Client(address, credentials, options);
      this.clients.set(key, client);
    }
    return client;
  }

  call(step: Step): Promise<Outcome> {
    const method = lookup(step.method);
    const input: DescMessage = method.input;
    const output: DescMessage = method.output;
    const request = fromJson(input, (step.request ?? {}) as JsonValue);
    const serialize = (value: typeof request) => Buffer.from(toBinary(input, value));
    const deserialize = (bytes: Buffer) => toJson(output, fromBinary(output, bytes)) as Json;
    const options = { deadline: Date.now() + (step.deadlineMs ?? 30_000) };
    const path = `/${step.method}`;
    const client = this.client(step);
    const outcome: Outcome = { code: "OK", messages: [], reason: "", fieldViolations: [] };
    const failed = (error: grpc.ServiceError) => {
      outcome.code = grpc.status[error.code];
      decodeDetails(error.metadata, outcome);
      return outcome;
    };
    return new Promise((resolve) => {
      if (method.methodKind === "server_streaming") {
        const stream = client.makeServerStreamRequest(
          path, serialize, deserialize, request, new grpc.Metadata(), options,
        );
        stream.on("data", (message: Json) => outcome.messages.push(message));
        stream.on("error", (error: grpc.ServiceError) => resolve(failed(error)));
        stream.on("end", () => resolve(outcome));
      } else {
        client.makeUnaryRequest(
          path, serialize, deserialize, request, new grpc.Metadata(), options,
          (error, reply) => {
            if (error) return resolve(failed(error));
            outcome.messages.push(reply);
            resolve(outcome);
          },
        );
      }
    });
  }
}

function check(step: Step, outcome: Outcome): void {
  const expect = step.expect ?? {};
  const show = () => JSON.stringify(outcome);
  const code = expect.code ?? "OK";
  if (outcome.code !== code) throw new CaseFailed(`${step.method}: expected ${code}, got ${show()}`);
  if (expect.reason !== undefined && outcome.reason !== expect.reason) {
    throw new CaseFailed(`${step.method}: expected reason ${expect.reason}, got ${show()}`);
  }
  if (expect.fieldViolations !== undefined) {
    const got = [...outcome.fieldViolations].sort();
    const want = [...expect.fieldViolations].sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new CaseFailed(`${step.method}: expected ${JSON.stringify(want)}, got ${show()}`);
    }
  }
  if (expect.response !== undefined) {
    const found = mismatch(expect.response, outcome.messages[0]);
    if (found) throw new CaseFailed(`${step.method}: ${found}`);
  }
  if (expect.stream !== undefined) {
    const found = mismatch(expect.stream, outcome.messages as JsonValue[]);
    if (found) throw new CaseFailed(`${step.method}: ${found}`);
  }
}

async function runCase(runner: Runner, testCase: Case, run: string): Promise<void> {
  const variables = new Map([["run", run]]);
  for (const original of testCase.steps) {
    const step: Step = {
      ...original,
      request: substitute(original.request ?? {}, variables),
      expect: substitute((original.expect ?? {}) as JsonValue, variables) as Step["expect"],
    };
    const outcome = await runner.call(step);
    check(step, outcome);
    for (const [name, dotted] of Object.entries(step.save ?? {})) {
      variables.set(name, pick(outcome.messages[0], dotted));
    }
  }
}

function argument(name: string): string {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? process.argv[index + 1] : undefined;
  if (!value) {
    console.error("usage: node interop.js --cases FILE --targets FILE");
    process.exit(2);
  }
  return value;
}

async function main(): Promise<number> {
  const cases: Case[] = JSON.parse(readFileSync(argument("cases"), "utf8")).cases;
  const runner = new Runner(JSON.parse(readFileSync(argument("targets"), "utf8")));
  const run = randomBytes(4).toString("hex");
  let passed = 0;
  try {
    for (const testCase of cases) {
      try {
        await runCase(runner, testCase, run);
        passed++;
        console.log(`ok ${testCase.id}`);
      } catch (error) {
        console.log(`FAIL ${testCase.id}: ${error instanceof Error ? error.message : error}`);
      }
    }
  } finally {
    runner.close();
  }
  console.log(`interop: ${passed}/${cases.length} cases passed`);
  return passed === cases.length ? 0 : 1;
}

main().then((code) => {
  process.exitCode = code;
});
