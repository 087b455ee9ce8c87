// A real Slurm on this machine: Debian's slurm-wlm and munge (installed by .ci/run), a controller and a node
// daemon started here as child processes on loopback ports, a munge key and socket in a temporary folder. A
// 3-task array job (`sbatch --array=0-2 --wait`) runs `clip-decoder extract` with no --shard flag (the array's
// environment gives each task its shard), then `cache merge` joins the shards, and the merged cache must equal an
// unsharded run's, record for record. The daemons are stopped at the end, also when the test fails.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { assertSameCache } from './helpers/same-cache.ts';

const BINARIES = ['/usr/sbin/munged', '/usr/sbin/slurmctld', '/usr/sbin/slurmd', '/usr/bin/sbatch', '/usr/bin/sinfo'];
const repo = resolve('.');
// Short: munge's socket path must fit a sockaddr_un (108 bytes).
const dir = mkdtempSync(join(tmpdir(), 'slurm-'));
const daemons: { name: string; child: ChildProcess }[] = [];

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

function start(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): void {
  const log = openSync(join(dir, `${name}.out`), 'a');
  const child = spawn(cmd, args, { env, stdio: ['ignore', log, log] });
  daemons.push({ name, child });
}

async function stopAll(): Promise<void> {
  // The node daemon first (it may hold job steps), then the controller, then munge; each by its own pid.
  for (const { child } of [...daemons].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
after(stopAll);

function logs(): string {
  return ['munged.log', 'slurmctld.log', 'slurmd.log', 'munged.out', 'slurmctld.out', 'slurmd.out']
    .filter((f) => existsSync(join(dir, f)))
    .map((f) => `--- ${f} (last lines)\n${readFileSync(join(dir, f), 'utf8').split('\n').slice(-15).join('\n')}`)
    .join('\n');
}

test('a Slurm array job (sbatch --array=0-2) extracts 3 shards from its environment; cache merge equals an unsharded run record for record', async () => {
  const absent = BINARIES.filter((b) => !existsSync(b));
  assert.deepEqual(
    absent,
    [],
    `Slurm is not installed (${absent.join(', ')} missing): apt-get install -y --no-install-recommends slurm-wlm munge (.ci/run does)`,
  );
  const data = join(dir, 'data');
  await buildEmojiTags({ out: data, size: 32, styles: ['noto'], limit: 12 });

  // munge: a key of our own, the socket in our folder.
  const munge = join(dir, 'munge');
  mkdirSync(munge, { mode: 0o711 });
  chmodSync(munge, 0o711);
  writeFileSync(join(munge, 'key'), randomBytes(1024), { mode: 0o600 });
  const socket = join(munge, 'socket');
  const env: NodeJS.ProcessEnv = { ...process.env, SLURM_CONF: join(dir, 'slurm.conf') };
  for (const k of Object.keys(env)) if (k.startsWith('SLURM_') && k !== 'SLURM_CONF') delete env[k];
  start(
    'munged',
    '/usr/sbin/munged',
    [
      '-F',
      '--force',
      `--socket=${socket}`,
      `--key-file=${join(munge, 'key')}`,
      `--pid-file=${join(munge, 'pid')}`,
      `--log-file=${join(dir, 'munged.log')}`,
      `--seed-file=${join(munge, 'seed')}`,
    ],
    env,
  );

  const [ctldPort, dPort] = [await freePort(), await freePort()];
  const user = userInfo().username;
  const memory = Math.floor((totalmem() / 2 ** 20) * 0.9);
  for (const d of ['state', 'spool']) mkdirSync(join(dir, d));
  writeFileSync(
    env.SLURM_CONF!,
    [
      'ClusterName=clipdecodertest',
      'SlurmctldHost=localhost(127.0.0.1)',
      `SlurmUser=${user}`,
      `SlurmdUser=${user}`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'MpiDefault=none',
      'SwitchType=switch/none',
      'ReturnToService=2',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      `NodeName=localhost NodeAddr=127.0.0.1 CPUs=${cpus().length} RealMemory=${memory} State=UNKNOWN`,
      'PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP',
      '',
    ].join('\n'),
  );
  // wait for munge's socket before the Slurm daemons authenticate through it
  for (let t = 0; !existsSync(socket); t++) {
    assert.ok(t < 100, `munged did not create ${socket}\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  start('slurmctld', '/usr/sbin/slurmctld', ['-D', '-f', env.SLURM_CONF!], env);
  start('slurmd', '/usr/sbin/slurmd', ['-D', '-N', 'localhost', '-f', env.SLURM_CONF!], env);
  let state = '';
  for (let t = 0; state !== 'idle'; t++) {
    assert.ok(t < 60, `the Slurm node did not become idle in 30 s (sinfo: "${state}")\n${logs()}`);
    await new Promise((r) => setTimeout(r, 500));
    const s = spawnSync('/usr/bin/sinfo', ['-h', '-N', '-o', '%t'], { env, encoding: 'utf8', timeout: 10_000 });
    state = s.stdout.trim();
    for (const d of daemons)
      assert.equal(d.child.exitCode, null, `${d.name} exited (${d.child.exitCode}) before the node was up\n${logs()}`);
  }

  // The array job: each task runs the same command; SLURM_ARRAY_TASK_ID / _COUNT give its shard.
  const cache = join(dir, 'cache');
  const script = join(dir, 'extract.sbatch');
  writeFileSync(
    script,
    [
      '#!/bin/bash',
      'set -euo pipefail',
      `cd ${repo}`,
      `exec ${process.execPath} bin/clip-decoder.js extract --dataset ${data} --cache ${cache} --model tests/fixtures/tiny-clip`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const sb = spawnSync(
    '/usr/bin/sbatch',
    ['--array=0-2', '--wait', '--cpus-per-task=1', `--output=${join(dir, 'task-%a.txt')}`, `--chdir=${dir}`, script],
    { env, encoding: 'utf8', timeout: 120_000 },
  );
  const taskLogs = [0, 1, 2].map((i) => (existsSync(join(dir, `task-${i}.txt`)) ? readFileSync(join(dir, `task-${i}.txt`), 'utf8') : ''));
  assert.equal(sb.status, 0, `sbatch: ${sb.stdout}${sb.stderr}\n${taskLogs.join('\n')}\n${logs()}`);
  assert.match(sb.stdout, /^Submitted batch job \d+/);
  taskLogs.forEach((l, i) => assert.match(l, new RegExp(`^shard ${i}/3: 4 computed, 0 already cached`, 'm'), `task ${i}: ${l}`));

  const merge = spawnSync(process.execPath, ['bin/clip-decoder.js', 'cache', 'merge', cache, '--dataset', data], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(merge.status, 0, merge.stderr);
  const full = join(dir, 'unsharded');
  const plain = spawnSync(
    process.execPath,
    ['bin/clip-decoder.js', 'extract', '--dataset', data, '--cache', full, '--model', 'tests/fixtures/tiny-clip'],
    { encoding: 'utf8', timeout: 60_000, env },
  );
  assert.equal(plain.status, 0, plain.stderr);
  assert.equal(await assertSameCache(full, cache), 12);
});
