#!/usr/bin/env node
// The filter's own cost per request, without Envoy: runs the .wasm in node's V8 (TurboFan, as
// Envoy: --no-liftoff) with a proxy-wasm host written in JS, drives whole request lifecycles
// (context create, request headers, callout answer, response, log, done, delete) and prints, per
// scenario, microseconds per request (best of 7 batches) and the hostcalls made per request.
//
//   node --no-liftoff bench/vm/run.js [--wasm FILE] [--requests N] [--scenario NAME]...
//
// Scenarios: idle (no rules), jwt-<ALG>-one (one token repeated), jwt-<ALG>-many (distinct
// tokens), custom (one CUSTOM provider, every request checked, the service answers 200),
// custom-cacheable (the same, answered with `cache-control: max-age=60`: the decision cache hits).
// ALG: RS256, ES256, EdDSA, PS256; the tokens and JWKS come from bench/.work/tokens (bench/run
// makes them; `python3 bench/tokens.py` alone does too). The host has no `verify_signature`, so
// RS*/ES* signatures are checked by the filter's pure-Rust backend here.
//
// Profile one scenario by function (build with names kept: CARGO_PROFILE_RELEASE_STRIP=false):
//   node --no-liftoff --cpu-prof bench/vm/run.js --wasm FILE --scenario custom
// Only the JS host differs from Envoy's: the numbers are the filter's instructions, not what a
// hostcall or a call into the VM costs inside Envoy (bench/README.md, "Where the time goes").
'use strict';
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const TOKENS = path.join(ROOT, 'bench', '.work', 'tokens');
const args = { wasm: path.join(ROOT, 'target/wasm32-wasip1/release/inline_authz.wasm'), requests: 20000, scenarios: [] };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--wasm') args.wasm = process.argv[++i];
  else if (a === '--requests') args.requests = Number(process.argv[++i]);
  else if (a === '--scenario') args.scenarios.push(process.argv[++i]);
  else { console.error(`unknown argument ${a}; see the comment at the top of ${__filename}`); process.exit(2); }
}
if (args.scenarios.length === 0) args.scenarios = ['idle', 'jwt-RS256-one', 'custom'];

const enc = new TextEncoder();
const dec = new TextDecoder();

// The proxy-wasm header map wire format: count, (name length, value length)*, (name \0 value \0)*.
function serializePairs(pairs) {
  const encoded = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + pairs.length * 8;
  for (const [k, v] of encoded) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, pairs.length, true);
  let at = 4;
  for (const [k, v] of encoded) {
    view.setUint32(at, k.length, true);
    view.setUint32(at + 4, v.length, true);
    at += 8;
  }
  for (const [k, v] of encoded) {
    out.set(k, at);
    at += k.length + 1;
    out.set(v, at);
    at += v.length + 1;
  }
  return out;
}

function scenario(name) {
  const read = (file) => fs.readFileSync(path.join(TOKENS, file), 'utf8');
  if (name === 'idle') return { config: {}, tokens: [] };
  if (name === 'custom' || name === 'custom-cacheable') {
    const provider = { service: 'authz', port: 9000, cluster: 'authz', timeout: '10s', includeRequestHeadersInCheck: ['x-ext-authz'] };
    const cacheable = name === 'custom-cacheable';
    return { config: { extensionProviders: [{ name: 'authz', envoyExtAuthzHttp: provider }] }, tokens: [], cacheable };
  }
  const m = /^jwt-(RS256|ES256|EdDSA|PS256)-(one|many)$/.exec(name);
  if (!m) throw new Error(`unknown scenario ${name}`);
  const issuer = read('issuer.txt').trim();
  const tokens = read(`${m[1]}-${m[2]}.txt`).split('\n').filter(Boolean);
  return { config: { jwtRules: [{ issuer, jwks: read('jwks.json').trim() }] }, tokens };
}

function run(name) {
  const { config, tokens, cacheable } = scenario(name);
  const configuration = enc.encode(JSON.stringify(config));
  const module = new WebAssembly.Module(fs.readFileSync(args.wasm));
  let exports;
  const counts = new Map();
  const bytes = () => new Uint8Array(exports.memory.buffer);
  const view = () => new DataView(exports.memory.buffer);
  const text = (ptr, len) => dec.decode(bytes().subarray(ptr, ptr + len));
  // Hands bytes to the VM as the host does: memory from proxy_on_memory_allocate.
  const give = (data, retPtr, retLen) => {
    const ptr = exports.proxy_on_memory_allocate(data.length);
    bytes().set(data, ptr);
    view().setUint32(retPtr, ptr, true);
    view().setUint32(retLen, data.length, true);
  };
  const OK = 0;
  const NOT_FOUND = 1;
  const REQUEST_HEADERS = 0;
  const CALL_RESPONSE_HEADERS = 6;
  const PLUGIN_CONFIGURATION = 7;
  let request = null;
  let replies = 0;
  let callToken = 0;
  const answer = serializePairs([[':status', '200'], ['content-length', '0'], ['date', 'Mon, 23 Nov 2026 20:00:00 GMT'],
    ...(cacheable ? [['cache-control', 'max-age=60']] : [])]);
  const nowNs = BigInt(Date.now()) * 1000000n;
  const host = {
    proxy_log: () => OK,
    proxy_get_log_level: (ret) => { view().setUint32(ret, 3, true); return OK; }, // warn, as the benchmark's Envoy
    proxy_get_buffer_bytes: (type, _start, _max, retPtr, retLen) => {
      if (type !== PLUGIN_CONFIGURATION) return NOT_FOUND;
      give(configuration, retPtr, retLen);
      return OK;
    },
    proxy_get_current_time_nanoseconds: (ret) => { view().setBigUint64(ret, nowNs, true); return OK; },
    proxy_get_header_map_pairs: (map, retPtr, retLen) => {
      if (map === REQUEST_HEADERS) give(request.wire, retPtr, retLen);
      else if (map === CALL_RESPONSE_HEADERS) give(answer, retPtr, retLen);
      else give(serializePairs([]), retPtr, retLen);
      return OK;
    },
    proxy_get_header_map_value: (map, keyPtr, keyLen, retPtr, retLen) => {
      if (map !== REQUEST_HEADERS) return NOT_FOUND;
      const key = text(keyPtr, keyLen);
      const found = request.headers.find(([n]) => n === key);
      if (!found) return NOT_FOUND;
      give(enc.encode(found[1]), retPtr, retLen);
      return OK;
    },
    proxy_define_metric: (_type, _ptr, _len, ret) => { view().setUint32(ret, counts.size + 1, true); return OK; },
    proxy_http_call: (_c, _cl, _h, _hl, _b, _bl, _t, _tl, _timeout, ret) => {
      request.call = ++callToken;
      view().setUint32(ret, callToken, true);
      return OK;
    },
    proxy_send_local_response: () => { replies++; return OK; },
    proxy_get_property: () => NOT_FOUND,
    proxy_get_shared_data: () => NOT_FOUND,
    proxy_call_foreign_function: () => NOT_FOUND,
  };
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === 'env') {
      const f = host[imp.name] || (() => OK);
      imports.env[imp.name] = (...a) => {
        counts.set(imp.name, (counts.get(imp.name) || 0) + 1);
        return f(...a);
      };
    } else if (imp.name === 'random_get') {
      imports[imp.module][imp.name] = (ptr, len) => { crypto.getRandomValues(bytes().subarray(ptr, ptr + len)); return 0; };
    } else {
      imports[imp.module][imp.name] = () => 0;
    }
  }
  exports = new WebAssembly.Instance(module, imports).exports;
  if (exports._initialize) exports._initialize();
  const ROOT_ID = 1;
  exports.proxy_on_context_create(ROOT_ID, 0);
  if (!exports.proxy_on_vm_start(ROOT_ID, 0) || !exports.proxy_on_configure(ROOT_ID, configuration.length)) {
    throw new Error(`${name}: the filter refused its configuration`);
  }
  // As the benchmark's wrk request arrives at the filter (Envoy adds the x-forwarded-proto and
  // x-request-id headers).
  const base = [[':authority', '127.0.0.1:10000'], [':path', '/bench'], [':method', 'GET'], [':scheme', 'http'],
    ['x-ext-authz', 'allow'], ['x-forwarded-proto', 'http'], ['x-request-id', '6c9a1f4e-1b7c-4a7e-9f0e-2d3c4b5a6978']];
  const requests = (tokens.length ? tokens : [null]).map((token) => {
    const headers = token ? [...base, ['authorization', `Bearer ${token}`]] : base;
    return { headers, wire: serializePairs(headers) };
  });
  let contextId = ROOT_ID + 1;
  const CONTINUE = 0;
  // One counter for warm-up and batches: with distinct tokens, every request brings one the
  // filter has not seen lately (10 000 tokens round and round, a cache of 1 000).
  let next = 0;
  const one = () => {
    const template = requests[next++ % requests.length];
    request = { headers: template.headers.slice(), wire: template.wire, call: 0 };
    const id = contextId++;
    exports.proxy_on_context_create(id, ROOT_ID);
    const action = exports.proxy_on_request_headers(id, request.headers.length, 1);
    if (action !== CONTINUE && request.call) exports.proxy_on_http_call_response(id, request.call, 3, 0, 0);
    exports.proxy_on_response_headers(id, 3, 0);
    exports.proxy_on_response_body(id, 3, 1);
    exports.proxy_on_log(id);
    exports.proxy_on_done(id);
    exports.proxy_on_delete(id);
  };
  const n = args.requests;
  for (let i = 0; i < Math.min(n, 5000); i++) one(); // warm-up: TurboFan, the token cache
  counts.clear();
  replies = 0;
  let best = Infinity;
  const BATCHES = 7;
  for (let b = 0; b < BATCHES; b++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) one();
    best = Math.min(best, Number(process.hrtime.bigint() - started) / 1000 / n);
  }
  const hostcalls = {};
  for (const [k, v] of counts) hostcalls[k] = +(v / (n * BATCHES)).toFixed(2);
  return { scenario: name, us_per_request: +best.toFixed(2), local_replies_per_request: +(replies / (n * BATCHES)).toFixed(2), hostcalls };
}

console.log(`# ${path.relative(process.cwd(), args.wasm)} (${fs.statSync(args.wasm).size} bytes), ${args.requests} requests x 7 batches per scenario, node ${process.version}`);
for (const name of args.scenarios) console.log(JSON.stringify(run(name)));
