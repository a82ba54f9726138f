#!/usr/bin/env node
// The reference scenario's Node.js backend (App Mesh cross-VPC walkthrough), standard library only.
//
//   GET /, /nodejs    -> "Node.js backend: Hello! from <IP> in <AZ>\n"   (text/plain)
//   GET /nodejs/api   -> {"from": IP, "zone": AZ, "service": "nodejs", "hostname", "time"}
//   GET /health       -> "Healthy!\n"
//   anything else     -> 404; methods other than GET/HEAD on the paths above -> 405;
//   a malformed request -> 400 (answered by node:http's parser, logged here).
//
// Environment: PORT (default 3000; 0 picks a free port), BIND_ADDRESS (default 0.0.0.0),
// HOST_IP (the address to report; default: the host's first non-loopback IPv4, see hostIp()),
// AZ (the zone to report; default "unknown").
// Prints "listening on ADDR:PORT" once it accepts connections, then one access line per request
// on stdout. SIGTERM/SIGINT: stops accepting, drops open connections and exits 0.
'use strict';

const http = require('node:http');
const os = require('node:os');

const SERVICE = 'nodejs';

// The address this host is reached at: HOST_IP if set, else the first IPv4 address that is not
// loopback (127/8) nor link-local (169.254/16) of an interface that is up, in the kernel's
// interface order (os.networkInterfaces() lists getifaddrs(3), skipping interfaces that are
// down). Reading the interfaces needs no route, so it works in a network namespace whose only
// interface is a veth with no default route.
function hostIp() {
  if (process.env.HOST_IP) return process.env.HOST_IP;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs || []) {
      if (a.family !== 'IPv4' && a.family !== 4) continue;
      if (a.internal || a.address.startsWith('127.') || a.address.startsWith('169.254.')) continue;
      return a.address;
    }
  }
  return '127.0.0.1';
}

const IP = hostIp();
const ZONE = process.env.AZ || 'unknown';
const GREETING = `Node.js backend: Hello! from ${IP} in ${ZONE}`;

// One line per request: time, client, request line, status, body bytes, duration.
function accessLog(client, requestLine, status, bytes, startNs) {
  const ms = Number(process.hrtime.bigint() - startNs) / 1e6;
  const time = new Date().toISOString();
  process.stdout.write(`${time} ${client} "${requestLine}" ${status} ${bytes} ${ms.toFixed(1)}ms\n`);
}

function route(method, path) {
  const textPaths = new Set(['/', '/nodejs']);
  if (!textPaths.has(path) && path !== '/nodejs/api' && path !== '/health') {
    return {status: 404, type: 'text/plain; charset=utf-8', body: 'Not Found\n'};
  }
  if (method !== 'GET' && method !== 'HEAD') {
    return {status: 405, type: 'text/plain; charset=utf-8', body: 'Method Not Allowed\n',
            headers: {allow: 'GET, HEAD'}};
  }
  if (path === '/health') {
    return {status: 200, type: 'text/plain; charset=utf-8', body: 'Healthy!\n'};
  }
  if (path === '/nodejs/api') {
    const doc = {from: IP, zone: ZONE, service: SERVICE, hostname: os.hostname(),
                 time: new Date().toISOString()};
    return {status: 200, type: 'application/json', body: JSON.stringify(doc) + '\n'};
  }
  return {status: 200, type: 'text/plain; charset=utf-8', body: GREETING + '\n'};
}

const server = http.createServer((req, res) => {
  const start = process.hrtime.bigint();
  const path = req.url.split('?', 1)[0];
  const r = route(req.method, path);
  const body = Buffer.from(r.body);
  res.writeHead(r.status, Object.assign({'content-type': r.type, 'content-length': body.length},
                                        r.headers || {}));
  res.end(req.method === 'HEAD' ? undefined : body);
  accessLog(req.socket.remoteAddress, `${req.method} ${req.url} HTTP/${req.httpVersion}`, r.status,
            req.method === 'HEAD' ? 0 : body.length, start);
});

// A request node:http's parser refuses (bad request line, bad header, oversized head): answer
// 400 (431 for an oversized head) and close; never a crash.
server.on('clientError', (err, socket) => {
  const start = process.hrtime.bigint();
  const client = socket.remoteAddress;
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const reason = status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
  if (socket.writable && err.code !== 'ECONNRESET') {
    const body = `${reason}\n`;
    socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
               `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
  } else {
    socket.destroy();
  }
  if (err.code !== 'ECONNRESET') {
    accessLog(client, `(malformed request: ${err.code || err.message})`, status, 0, start);
  }
});

const port = process.env.PORT ? Number(process.env.PORT) : 3000;
const bind = process.env.BIND_ADDRESS || '0.0.0.0';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`nodejs backend: PORT=${process.env.PORT} is not a port number\n`);
  process.exit(2);
}
server.keepAliveTimeout = 60000;

server.on('error', (err) => {
  process.stderr.write(`nodejs backend: cannot listen on ${bind}:${port}: ${err.message}\n`);
  process.exit(1);
});

server.listen(port, bind, () => {
  const a = server.address();
  process.stdout.write(`nodejs backend: listening on ${a.address}:${a.port} as ${IP} in ${ZONE}\n`);
});

function shutdown(signal) {
  process.stdout.write(`nodejs backend: ${signal}, exiting\n`);
  server.close();
  if (server.closeAllConnections) server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
