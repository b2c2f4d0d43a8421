/**
 * nginx for the gateway benchmark, run from a temporary prefix so it needs no root paths: the
 * fixed-response upstream (`return 200` with a completion body on every upstream port) and the
 * baseline reverse proxy (keep-alive upstreams, HTTP/1.1, no access log, no buffering for SSE).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where Debian installs them; `NGINX` / `WRK` override. */
export const NGINX_BIN = process.env.NGINX ?? '/usr/sbin/nginx';
export const WRK_BIN = process.env.WRK ?? '/usr/bin/wrk';

/** The first line of `nginx -v` (it prints to stderr), or undefined when it will not run. */
export function toolVersion(bin: string, flag: string): string | undefined {
  const r = spawnSync(bin, [flag], { encoding: 'utf8' });
  if (r.error !== undefined) return undefined;
  const text = `${r.stdout}${r.stderr}`.trim();
  return text.split('\n')[0];
}

/** Requests per keep-alive connection before nginx closes it; high so no row reconnects. */
const KEEPALIVE_REQUESTS = 1_000_000;

/** Paths every nginx here writes into `dir`, instead of /var/lib/nginx and /run. */
function commonMain(dir: string, name: string, workers: number): string {
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    mkdirSync(join(dir, `${name}-${sub}`), { recursive: true });
  }
  return `worker_processes ${workers};
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}-error.log`)} warn;
events { worker_connections 4096; }
`;
}

function commonHttp(dir: string, name: string): string {
  return `  access_log off;
  client_body_temp_path ${join(dir, `${name}-client_body`)};
  proxy_temp_path ${join(dir, `${name}-proxy`)};
  fastcgi_temp_path ${join(dir, `${name}-fastcgi`)};
  uwsgi_temp_path ${join(dir, `${name}-uwsgi`)};
  scgi_temp_path ${join(dir, `${name}-scgi`)};
  # Keep bodies (2.5 to 6 KB here) in memory, never in temp files.
  client_body_buffer_size 64k;
  client_max_body_size 8m;
  keepalive_requests ${KEEPALIVE_REQUESTS};
  keepalive_timeout 60s;
`;
}

/**
 * The fixed-response upstream: every port answers POST /v1/... with `completion` (nginx reads and
 * discards the body), /v1/models with the model list, anything else with 200 "ok".
 */
export function upstreamConfig(
  dir: string,
  ports: readonly number[],
  completion: string,
  models: string,
): string {
  const listens = ports.map((p) => `    listen 127.0.0.1:${p};`).join('\n');
  return `${commonMain(dir, 'upstream', 1)}
http {
${commonHttp(dir, 'upstream')}
  server {
${listens}
    location /v1/models { default_type application/json; return 200 '${models}'; }
    location /v1/ { default_type application/json; return 200 '${completion}'; }
    location /metrics { default_type text/plain; return 200 ''; }
    location / { default_type text/plain; return 200 'ok'; }
  }
}
`;
}

/**
 * The baseline reverse proxy: one `server` per path, each to its own `upstream` block with
 * keep-alive connections, HTTP/1.1 and the Connection header cleared (what keep-alive to upstreams
 * needs); response buffering off on the streaming one, as for any SSE relay.
 */
export function proxyConfig(
  dir: string,
  name: string,
  workers: number,
  routes: readonly { listen: number; upstreams: readonly number[]; streaming: boolean }[],
): string {
  const blocks = routes.map((r, i) => {
    const servers = r.upstreams.map((p) => `    server 127.0.0.1:${p};`).join('\n');
    return `  upstream backends${i} {
${servers}
    keepalive 128;
    keepalive_requests ${KEEPALIVE_REQUESTS};
  }
  server {
    listen 127.0.0.1:${r.listen};
    location / {
      proxy_pass http://backends${i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${r.streaming ? '      proxy_buffering off;\n' : ''}    }
  }`;
  });
  return `${commonMain(dir, name, workers)}
http {
${commonHttp(dir, name)}
${blocks.join('\n')}
}
`;
}

/** Writes `config` as `dir/name.conf` and returns nginx's argv to run it in the foreground. */
export function nginxArgs(dir: string, name: string, config: string): string[] {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, config);
  return [NGINX_BIN, '-p', dir, '-e', join(dir, `${name}-error.log`), '-c', file, '-g', 'daemon off;'];
}
