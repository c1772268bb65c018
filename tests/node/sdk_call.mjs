// Drive the official TypeScript SDK (@anthropic-ai/sdk 1.x) configured ONLY
// by its environment, for skillgate's Rust tests.
//
//   ANTHROPIC_BASE_URL=http://127.0.0.1:PORT \
//   ANTHROPIC_IDENTITY_TOKEN_FILE=/path/token.jwt \
//   ANTHROPIC_FEDERATION_RULE_ID=fdrl_x ANTHROPIC_ORGANIZATION_ID=org \
//   node tests/node/sdk_call.mjs STEP [STEP...]
//
// `new Anthropic()` gets no credential, base URL or fetch: it resolves them
// from the ANTHROPIC_* variables (the Rust side sets exactly those). With the
// workload-identity variables it exchanges the identity token at
// `${ANTHROPIC_BASE_URL}/v1/oauth/token` and calls the API with the result.
//
// Steps, in order, one client: `create`, `stream`, `rotate:PATH` (replace the
// identity token file's content with PATH's, atomically). SG_PROMPT, SG_MODEL
// and SG_MAX_TOKENS as in tests/python/sdk_env.py.
//
// Prints exactly one JSON line, {"results": [...]}, one entry per create or
// stream step: {"ok": true, "step", "text"} or
// {"ok": false, "step", "error_class", "status", "message"}.

import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// No credentials profile on disk (~/.config/anthropic), nor a proxy.
process.env.HOME = mkdtempSync(join(tmpdir(), 'sg-sdk-home-'));
for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) {
  delete process.env[name];
}

const { default: Anthropic } = await import('@anthropic-ai/sdk');

function failHarness(message) {
  console.error(`sdk_call.mjs: ${message}`);
  process.exit(2);
}

function rotate(source) {
  const target = process.env.ANTHROPIC_IDENTITY_TOKEN_FILE;
  if (!target) failHarness('rotate: needs ANTHROPIC_IDENTITY_TOKEN_FILE');
  const tmp = `${target}.rotating`;
  writeFileSync(tmp, readFileSync(source));
  renameSync(tmp, target);
}

async function run(client, step, params) {
  try {
    if (step === 'create') {
      const message = await client.messages.create(params);
      const text = message.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
      return { ok: true, step, text };
    }
    const stream = client.messages.stream(params);
    let text = '';
    stream.on('text', (delta) => {
      text += delta;
    });
    await stream.finalMessage();
    return { ok: true, step, text };
  } catch (error) {
    return {
      ok: false,
      step,
      error_class: error?.constructor?.name ?? typeof error,
      status: error?.status ?? error?.statusCode ?? null,
      message: String(error?.message ?? error),
    };
  }
}

const steps = process.argv.slice(2);
if (steps.length === 0) failHarness('usage: sdk_call.mjs create|stream|rotate:PATH ...');
for (const step of steps) {
  if (step !== 'create' && step !== 'stream' && !step.startsWith('rotate:')) {
    failHarness(`unknown step ${JSON.stringify(step)}`);
  }
}
const params = {
  model: process.env.SG_MODEL ?? 'claude-sonnet-4-5',
  max_tokens: Number.parseInt(process.env.SG_MAX_TOKENS ?? '256', 10),
  messages: [{ role: 'user', content: process.env.SG_PROMPT ?? 'Say hello.' }],
};
const results = [];
let client;
try {
  client = new Anthropic({ maxRetries: 0, timeout: 60_000 });
} catch (error) {
  results.push({ ok: false, step: 'client', error_class: error?.constructor?.name, status: null, message: String(error?.message ?? error) });
}
if (client) {
  for (const step of steps) {
    if (step.startsWith('rotate:')) {
      rotate(step.slice('rotate:'.length));
      continue;
    }
    results.push(await run(client, step, params));
  }
}
process.stdout.write(`${JSON.stringify({ results })}\n`);
