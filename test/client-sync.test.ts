// client-sync.test.ts: the CLI's blocking request (supervisor/client-sync.ts)
// speaks the control protocol as request() does: progress lines in order
// (also when a line and a multi-byte character straddle two reads), the
// result, the supervisor's error with its code, NO_SUPERVISOR when nothing
// listens. The server runs in a child process (the client blocks this one).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { requestSync } from '../src/supervisor/client-sync';
import { NO_SUPERVISOR } from '../src/supervisor/control-socket';
import { tmpdir } from './helpers';

/** A one-connection-at-a-time server under root/run/snapproc.socket answering like a supervisor; resolves once it listens. */
async function fakeSupervisor(root: string): Promise<() => void> {
  fs.mkdirSync(path.join(root, 'run'), { recursive: true });
  const sock = path.join(root, 'run', 'snapproc.socket');
  const code = `
    const net = require('net');
    net.createServer((s) => {
      let buf = '';
      s.on('data', (d) => {
        buf += d;
        const nl = buf.indexOf('\\n');
        if (nl < 0) return;
        const req = JSON.parse(buf.slice(0, nl));
        if (req.method === 'fail') return s.end(JSON.stringify({ id: req.id, ok: false, error: { code: 'ENOENT', message: 'snap "x" is not installed' } }) + '\\n');
        const out = Buffer.from(JSON.stringify({ id: 99, progress: 'not mine' }) + '\\n' + JSON.stringify({ id: req.id, progress: 'step één' }) + '\\n' + JSON.stringify({ id: req.id, ok: true, result: { echo: req.params, method: req.method } }) + '\\n');
        // In pieces, one cut inside the two-byte é.
        const cut = out.indexOf(Buffer.from('é')) + 1;
        s.write(out.subarray(0, cut));
        setTimeout(() => s.end(out.subarray(cut)), 20);
      });
    }).listen(${JSON.stringify(sock)}, () => process.stdout.write('ready\\n'));
  `;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  return () => child.kill('SIGKILL');
}

test('progress lines, the result, the error, and no supervisor', async () => {
  const root = tmpdir('client-sync-');
  assert.throws(() => requestSync(root, 'ping'), (err: { code?: string }) => err.code === NO_SUPERVISOR);
  const stop = await fakeSupervisor(root);
  try {
    const lines: string[] = [];
    const r = requestSync(root, 'restart', { snap: 'x', app: 'svc' }, (l) => lines.push(l)) as unknown as { echo: unknown; method: string };
    assert.equal(lines, ['step één'], 'only this request\'s progress, whole');
    assert.equal(r, { echo: { snap: 'x', app: 'svc' }, method: 'restart' });
    assert.throws(() => requestSync(root, 'fail'), (err: { code?: string; message?: string }) => err.code === 'ENOENT' && err.message === 'snap "x" is not installed');
  } finally {
    stop();
  }
});

test.run();
