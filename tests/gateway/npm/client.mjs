// Drives `factory gateway` with the official OpenAI Node client: a plain completion, a
// streaming one (with the usage chunk asked for) and a call with a wrong key. Prints one JSON
// object with what it saw; tests/gateway/openai_npm_test.cc checks it.
import OpenAI from 'openai';

const baseURL = `${process.env.GATEWAY_URL}/v1`;
const client = new OpenAI({ baseURL, apiKey: process.env.GATEWAY_KEY, maxRetries: 0 });
const messages = [{ role: 'user', content: 'say hello' }];
const out = {};

const plain = await client.chat.completions.create({ model: 'cloud/fast', messages });
out.plain = { text: plain.choices[0].message.content, usage: plain.usage, model: plain.model };

const stream = await client.chat.completions.create({
  model: 'cloud/fast', messages, stream: true, stream_options: { include_usage: true },
});
out.stream = { text: '', chunks: 0, usage: null };
for await (const chunk of stream) {
  out.stream.chunks += 1;
  out.stream.text += chunk.choices[0]?.delta?.content ?? '';
  if (chunk.usage) out.stream.usage = chunk.usage;
}

try {
  const wrong = new OpenAI({ baseURL, apiKey: 'fk-not-issued', maxRetries: 0 });
  await wrong.chat.completions.create({ model: 'cloud/fast', messages });
  out.wrong_key = { status: 200 };
} catch (error) {
  out.wrong_key = { status: error.status, class: error.constructor.name, code: error.code };
}

console.log(JSON.stringify(out));
