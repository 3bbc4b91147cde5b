// Drives `factory mcp` with the official MCP TypeScript SDK client over stdio: initialize, the
// tool list, tool calls (good and bad arguments), resources. Prints one JSON object with what it
// saw; tests/mcp/mcp_npm_test.cc checks it. FACTORY_BINARY and PROJECT_DIR come from the test.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const transport = new StdioClientTransport({
  command: process.env.FACTORY_BINARY,
  args: ['mcp'],
  cwd: process.env.PROJECT_DIR,
  env: process.env,
  stderr: 'inherit',
});
const client = new Client({ name: 'factory-test-client', version: '1.0.0' });
await client.connect(transport);

const out = {};
out.server = client.getServerVersion();
out.capabilities = client.getServerCapabilities();
out.protocol_version = transport.protocolVersion ?? null;

const tools = await client.listTools();
out.tools = tools.tools.map((tool) => ({ name: tool.name, schema: tool.inputSchema }));

const call = async (name, args) => {
  try {
    const result = await client.callTool({ name, arguments: args });
    return { isError: result.isError ?? false, text: result.content?.[0]?.text,
             structured: result.structuredContent ?? null };
  } catch (error) {
    return { thrown: true, code: error.code, message: error.message };
  }
};

out.created = await call('create_task', { title: 'from mcp', command: 'true', idempotency_key: 'k1',
                                          priority: 5, run: 'mcp-run' });
out.again = await call('create_task', { title: 'from mcp', idempotency_key: 'k1', run: 'mcp-run' });
out.bad_priority = await call('create_task', { title: 'x', priority: 'high' });
out.missing_title = await call('create_task', { command: 'true' });
out.unknown_argument = await call('create_task', { title: 'x', colour: 'red' });
out.listed = await call('list_tasks', { run: 'mcp-run' });
const id = out.created.structured?.task?.id;
out.got = await call('get_task', { id });
out.missing_task = await call('get_task', { id: 'no-such-task' });
out.status = await call('run_status', { run: 'mcp-run' });
out.unknown_tool = await call('no_such_tool', {});
out.stats = await call('stats', {});
out.costs = await call('costs', { by: 'model' });
out.bad_by = await call('costs', { by: 'colour' });

const resources = await client.listResources();
out.resources = resources.resources.map((resource) => resource.uri);
const read = await client.readResource({ uri: `factory://tasks/${id}` });
out.read = { uri: read.contents[0].uri, mimeType: read.contents[0].mimeType,
             body: JSON.parse(read.contents[0].text) };
try {
  await client.readResource({ uri: 'factory://tasks/no-such-task' });
  out.read_missing = { thrown: false };
} catch (error) {
  out.read_missing = { thrown: true, code: error.code };
}
const templates = await client.listResourceTemplates();
out.templates = templates.resourceTemplates.map((template) => template.uriTemplate);
await client.ping();
out.ping = true;

await client.close();
console.log(JSON.stringify(out));
