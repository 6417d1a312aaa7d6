// The application behind the proxy: echoes what it received. HTML for a browser (a table of
// the request headers, one `<td data-header="name">` per value), JSON for anything that asks
// for `application/json`.

import { createServer } from 'node:http';

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function wantsJson(req) {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}

/**
 * Starts the echo server on 127.0.0.1 on an ephemeral port.
 *
 * @returns {Promise<{ url: string, requests: object[], close: () => Promise<void> }>}
 */
export async function startUpstream() {
  const requests = [];
  const server = createServer((req, res) => {
    // Pairs in arrival order, names lower-cased by node.
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
    }
    const seen = { method: req.method, uri: req.url, headers };
    requests.push(seen);
    // The body is not needed; drain it so keep-alive works.
    req.resume();
    if (wantsJson(req)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(seen));
      return;
    }
    const rows = headers
      .map(([n, v]) => `<tr><th>${escape(n)}</th><td data-header="${escape(n)}">${escape(v)}</td></tr>`)
      .join('\n');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>echo</title></head>
<body>
<h1>echo</h1>
<p><span id="method">${escape(req.method)}</span> <code id="uri">${escape(req.url)}</code></p>
<table id="headers">
${rows}
</table>
</body></html>
`);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
