// A real nginx in front of a herald server, for tests: writes a config into a temp dir and
// runs `nginx -p DIR -c nginx.conf` (no daemon, its own pid file and logs) on a free
// loopback port. The modes are the configurations sysadmins actually write:
//   good           WebSocket forwarding as docs/operations.md recommends (HTTP/1.1 upstream,
//                  Upgrade/Connection forwarded, Host kept, buffering off, 75 s timeouts)
//   stripped       THE common misconfiguration: a plain `location / { proxy_pass ...; }`, so
//                  nginx speaks HTTP/1.0 upstream and drops Upgrade/Connection: herald sees
//                  a plain GET and every WebSocket upgrade fails
//   short-timeout  good, but `proxy_read_timeout 3s`: idle connections are cut
//   answering      good, except that nginx answers /herald/ws itself with a 200 page (what a
//                  proxy or CDN without WebSocket support, or a catch-all route, does)
//   buffered       WebSocket forwarded on /herald/ws only, the rest by a plain proxy_pass:
//                  HTTP/1.0 upstream with nginx's default `proxy_buffering on`, which holds a
//                  streamed answer until its end. (With `proxy_http_version 1.1`, nginx 1.22
//                  passes chunks on as they come even with buffering on.)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../protocol/harness.mjs';

export const nginxBinary = process.env.HERALD_NGINX || '/usr/sbin/nginx';

// `upstream` is one herald's port, or a list of ports: then nginx balances them round robin
// (no sticky sessions), as in front of a cluster.
const target = (upstream) => (Array.isArray(upstream) ? 'herald_cluster' : `127.0.0.1:${upstream}`);

const common = (upstream) => `
        proxy_pass http://${target(upstream)};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;`;

const herald = (upstream, { readTimeout = '75s' } = {}) => `
    location /herald/ {${common(upstream)}
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_read_timeout ${readTimeout};
        proxy_send_timeout ${readTimeout};
        proxy_buffering off;
    }`;

/** The server block's locations for each mode. */
export const modes = {
  good: (up) => `${herald(up)}
    location / {${common(up)}
    }`,
  stripped: (up) => `
    location / {${common(up)}
    }`,
  'short-timeout': (up) => `${herald(up, { readTimeout: '3s' })}
    location / {${common(up)}
    }`,
  answering: (up) => `
    location /herald/ws {
        default_type text/html;
        return 200 "<!doctype html><title>Welcome</title>";
    }${herald(up)}
    location / {${common(up)}
    }`,
  buffered: (up) => `
    location /herald/ws {${common(up)}
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
    location / {${common(up)}
    }`,
};

export function config(dir, port, locations, upstream) {
  const tmp = (name) => path.join(dir, 'tmp', name);
  return `daemon off;
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 256; }
http {
    log_format herald '$request_uri $status $upstream_addr';
    access_log ${path.join(dir, 'access.log')} herald;${Array.isArray(upstream) ? `
    upstream herald_cluster {${upstream.map((p) => `
        server 127.0.0.1:${p} max_fails=1 fail_timeout=5s;`).join('')}
    }` : ''}
    client_body_temp_path ${tmp('body')};
    proxy_temp_path ${tmp('proxy')};
    fastcgi_temp_path ${tmp('fastcgi')};
    uwsgi_temp_path ${tmp('uwsgi')};
    scgi_temp_path ${tmp('scgi')};
    server {
        listen 127.0.0.1:${port};
${locations}
    }
}
`;
}

function accepts(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

/**
 * Starts nginx in `mode` in front of herald at 127.0.0.1:`upstreamPort` (or round robin over a
 * list of ports); resolves once it
 * accepts connections. `stop()` ends it and removes its directory (logs are printed on a
 * failed start).
 */
export async function startNginx(mode, upstreamPort) {
  const locations = modes[mode];
  if (!locations) throw new Error(`nginx mode ${mode}: expected one of ${Object.keys(modes).join(', ')}`);
  // A free port can be taken between the probe and nginx's bind: try a few.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `herald-nginx-${mode}-`));
    fs.chmodSync(dir, 0o755);  // nginx's workers run as another user when started as root
    fs.mkdirSync(path.join(dir, 'tmp'));
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, config(dir, port, locations(upstreamPort), upstreamPort));
    const child = spawn(nginxBinary, ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let up = false;
    for (let i = 0; i < 100 && child.exitCode === null && !up; i++) {
      up = await accepts(port);
      if (!up) await new Promise((r) => setTimeout(r, 50));
    }
    if (up) {
      return {
        mode, port, dir,
        url: `http://127.0.0.1:${port}`,
        ws: `ws://127.0.0.1:${port}/herald/ws`,
        log: () => fs.readFileSync(path.join(dir, 'error.log'), 'utf8'),
        accessLog: () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8'),
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          const r = await exited;
          clearTimeout(t);
          fs.rmSync(dir, { recursive: true, force: true });
          return r;
        },
      };
    }
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    let log = '';
    try { log = fs.readFileSync(path.join(dir, 'error.log'), 'utf8'); } catch { /* none written */ }
    fs.rmSync(dir, { recursive: true, force: true });
    if (attempt === 3 || !/Address already in use/.test(stderr + log)) {
      throw new Error(`nginx (${mode}) did not start: ${stderr}${log}`);
    }
  }
  throw new Error('unreachable');
}
