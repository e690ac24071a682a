#!/usr/bin/env python3
"""The agent against a boto3 importer, on the same inputs and the same loopback hubsim, in one
run. Started by bench/run.sh (which builds the release binaries and a venv with boto3).

Measures, each over several repetitions (median and min-max):
  1. without quota: the agent (`run --once`) and the boto3 baseline on 200k ASFF findings in
     files of 1-10 MB; the agent also on the same findings as Trivy reports. Findings/s, CPU
     seconds, findings per CPU-second, peak RSS, and the ratios agent/baseline.
  2. with hubsim's quota (10 requests/s, burst 30): goodput as % of 1,000 findings/s, and CPU %
     of one core.
  3. memory: the agent's peak RSS with backlogs of 10k, 100k and 1M findings, and idle RSS.
  4. latency at idle: file renamed into the spool -> its request at hubsim (p50/p99 over 100
     files), and start -> READY=1 (sd_notify).
The agent and the baseline run pinned to CPU 1, hubsim to CPU 0 (taskset).
"""
import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

KEY, SECRET = "AKIDBENCH", "bench-secret"
ACCOUNT, REGION = "123456789012", "us-east-1"


def finding(i, target):
    return {
        "SchemaVersion": "2018-10-08",
        "Id": f"bench/{target}/CVE-2026-{i:07}/libexample",
        "ProductArn": f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default",
        "AwsAccountId": ACCOUNT,
        "GeneratorId": "bench-scanner",
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2026-11-01T10:00:00Z",
        "UpdatedAt": "2026-11-01T10:00:00Z",
        "Severity": {"Label": "HIGH", "Original": "7.5"},
        "Title": f"CVE-2026-{i:07} in libexample 1.2.3",
        "Description": "A heap buffer overflow in libexample's parser allows a remote attacker to cause a "
        "denial of service or possibly execute code via a crafted input file. Versions before 1.2.4 "
        "are affected.",
        "Remediation": {"Recommendation": {"Text": "Upgrade libexample to 1.2.4 or later.",
                                           "Url": "https://example.com/advisories/libexample"}},
        "Resources": [{"Type": "AwsEc2Instance", "Region": REGION,
                       "Id": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"}],
        "Vulnerabilities": [{"Id": f"CVE-2026-{i:07}", "FixAvailable": "YES",
                             "VulnerablePackages": [{"Name": "libexample", "Version": "1.2.3",
                                                     "FixedInVersion": "1.2.4", "PackageManager": "OS"}]}],
        "ProductFields": {"scanner": "bench", "target": target},
    }


def file_sizes(n, rng):
    """Findings per file for n findings in files of about 1-10 MB (~1.1 KB a finding)."""
    out = []
    while n > 0:
        k = min(n, rng.randint(900, 9000))
        out.append(k)
        n -= k
    return out


def gen_asff(dirpath, n, seed=1):
    os.makedirs(dirpath, exist_ok=True)
    rng, i = random.Random(seed), 0
    for f, k in enumerate(file_sizes(n, rng)):
        with open(os.path.join(dirpath, f"asff-{f:04}.ndjson"), "w") as out:
            for _ in range(k):
                out.write(json.dumps(finding(i, "host-1"), separators=(",", ":")) + "\n")
                i += 1


def gen_trivy(dirpath, n, seed=2):
    os.makedirs(dirpath, exist_ok=True)
    rng, i = random.Random(seed), 0
    for f, k in enumerate(file_sizes(n, rng)):
        vulns = []
        for _ in range(k):
            vulns.append({
                "VulnerabilityID": f"CVE-2026-{i:07}", "PkgName": f"libexample{i % 97}",
                "InstalledVersion": "1.2.3", "FixedVersion": "1.2.4", "Status": "fixed", "Severity": "HIGH",
                "Title": f"libexample: heap overflow {i}",
                "Description": "A heap buffer overflow in libexample's parser allows a remote attacker to "
                "cause a denial of service or possibly execute code via a crafted input file.",
                "PrimaryURL": f"https://avd.aquasec.com/nvd/cve-2026-{i:07}",
                "CVSS": {"nvd": {"V3Score": 7.5, "V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}},
            })
            i += 1
        report = {"SchemaVersion": 2, "CreatedAt": "2026-11-01T10:00:00Z", "ArtifactName": f"app-{f}:1.0",
                  "ArtifactType": "container_image",
                  "Results": [{"Target": f"app-{f}:1.0 (debian 12.5)", "Class": "os-pkgs", "Type": "debian",
                               "Vulnerabilities": vulns}]}
        with open(os.path.join(dirpath, f"trivy-{f:04}.json"), "w") as out:
            json.dump(report, out)


class Hubsim:
    def __init__(self, binary, work, quota=None):
        self.addr_file = os.path.join(work, "hubsim.addr")
        if os.path.exists(self.addr_file):
            os.remove(self.addr_file)
        args = pinned(0) + [binary, "--listen", "127.0.0.1:0", "--addr-file", self.addr_file,
                            "--access-key", KEY, "--secret-key", SECRET, "--account", ACCOUNT]
        if quota:
            args += ["--quota", quota]
        self.proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(self.addr_file):
                break
            time.sleep(0.01)
        self.endpoint = "http://" + open(self.addr_file).read().strip()

    def get(self, path):
        return json.load(urllib.request.urlopen(self.endpoint + path))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def pinned(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def measure(args, env=None):
    """Runs a command; returns (wall s, cpu s, peak RSS KiB) of that process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{args[-3:]} failed: {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def aws_env():
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
               AWS_REGION=REGION, AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    return env


def agent_config(work, spool, endpoint, quota=False, flush=None):
    rate = "" if quota else "[rate]\nrequests_per_second = 100000.0\nburst = 100000\n"
    batch = f"[batch]\nflush_interval = \"{flush}\"\n" if flush else ""
    path = os.path.join(work, "config.toml")
    with open(path, "w") as f:
        f.write(f"[spool]\ndir = \"{spool}\"\n[destination]\nregion = \"{REGION}\"\naccount_id = \"{ACCOUNT}\"\n"
                f"endpoint_url = \"{endpoint}\"\n{rate}{batch}[log]\nlevel = \"warn\"\n"
                f"[status]\npath = \"{work}/status.json\"\n")
    return path


def fresh_spool(work, source):
    spool = os.path.join(work, "spool")
    shutil.rmtree(spool, ignore_errors=True)
    shutil.copytree(source, spool)
    return spool


def run_agent(opts, work, source, n, quota=None):
    hub = Hubsim(opts.hubsim, work, quota)
    try:
        spool = fresh_spool(work, source)
        config = agent_config(work, spool, hub.endpoint, quota=bool(quota))
        wall, cpu, rss = measure(pinned(1) + [opts.agent, "run", "--once", "--config", config], aws_env())
        stored = hub.get("/_hubsim/stats")["accepted"]
        assert stored >= n, f"agent: {stored} of {n} accepted"
        assert not [f for f in os.listdir(spool) if not f.startswith(".") and f != "failed"], "files left"
    finally:
        hub.stop()
    return wall, cpu, rss


def run_baseline(opts, work, source, n, quota=None):
    hub = Hubsim(opts.hubsim, work, quota)
    try:
        spool = fresh_spool(work, source)
        wall, cpu, rss = measure(pinned(1) + [opts.python, opts.baseline, spool, hub.endpoint], aws_env())
        stored = hub.get("/_hubsim/stats")["accepted"]
        assert stored >= n, f"baseline: {stored} of {n} accepted"
    finally:
        hub.stop()
    return wall, cpu, rss


def summary(n, runs):
    walls = [r[0] for r in runs]
    cpus = [r[1] for r in runs]
    rss = [r[2] for r in runs]
    rate = [n / w for w in walls]
    per_cpu = [n / max(c, 1e-3) for c in cpus]
    med = statistics.median
    return {"findings_per_s": med(rate), "findings_per_s_range": [min(rate), max(rate)],
            "cpu_s": med(cpus), "cpu_s_range": [min(cpus), max(cpus)],
            "findings_per_cpu_s": med(per_cpu), "peak_rss_mib": med(rss) / 1024,
            "peak_rss_mib_range": [min(rss) / 1024, max(rss) / 1024], "wall_s": med(walls)}


def latency(opts, work):
    """Watch mode at idle: rename -> first arrival at hubsim; and start -> READY=1."""
    hub = Hubsim(opts.hubsim, work)
    sock_path = os.path.join(work, "notify.sock")
    spool = os.path.join(work, "spool-idle")
    shutil.rmtree(spool, ignore_errors=True)
    os.makedirs(spool)
    config = agent_config(work, spool, hub.endpoint, flush=opts.flush)
    ready, idle_rss, lat = [], [], []
    try:
        for rep in range(opts.ready_reps):
            if os.path.exists(sock_path):
                os.remove(sock_path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(sock_path)
            sock.settimeout(10)
            env = aws_env()
            env["NOTIFY_SOCKET"] = sock_path
            t0 = time.perf_counter()
            proc = subprocess.Popen(pinned(1) + [opts.agent, "run", "--config", config], env=env,
                                    stderr=None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL)
            while b"READY=1" not in sock.recv(4096):
                pass
            ready.append((time.perf_counter() - t0) * 1000)
            if rep == opts.ready_reps - 1:
                time.sleep(2)
                idle_rss.append(rss_kib(proc.pid))
                for i in range(100):
                    fid = f"latency-{i}"
                    tmp = os.path.join(spool, f".{fid}.tmp")
                    with open(tmp, "w") as f:
                        f.write(json.dumps(finding(i, "latency") | {"Id": fid}) + "\n")
                    t_rename = time.time_ns()
                    os.rename(tmp, os.path.join(spool, f"{fid}.json"))
                    deadline = time.time() + 10
                    while time.time() < deadline:
                        arrivals = hub.get("/_hubsim/arrivals")
                        if fid in arrivals:
                            lat.append((arrivals[fid] - t_rename) / 1e6)
                            break
                        time.sleep(0.002)
                    else:
                        sys.exit(f"{fid} never arrived")
                    time.sleep(0.05)
            proc.terminate()
            proc.wait()
            sock.close()
    finally:
        hub.stop()
    lat.sort()
    return {"ready_ms_median": statistics.median(ready), "ready_ms_range": [min(ready), max(ready)],
            "idle_rss_mib": idle_rss[0] / 1024, "flush_interval": opts.flush,
            "file_to_request_ms_p50": lat[len(lat) // 2], "file_to_request_ms_p99": lat[int(len(lat) * 0.99) - 1],
            "file_to_request_ms_max": lat[-1]}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--agent", required=True)
    p.add_argument("--hubsim", required=True)
    p.add_argument("--python", default=sys.executable, help="the interpreter with boto3")
    p.add_argument("--baseline", default=os.path.join(os.path.dirname(__file__), "baseline_boto3.py"))
    p.add_argument("--findings", type=int, default=200_000)
    p.add_argument("--quota-findings", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--ready-reps", type=int, default=10)
    p.add_argument("--flush", default="1s", help="batch.flush_interval for the latency run")
    p.add_argument("--backlogs", default="10000,100000,1000000")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    opts = p.parse_args()

    work = tempfile.mkdtemp(prefix="sha-bench-")
    results = {"machine": machine()}
    try:
        asff, trivy = os.path.join(work, "in-asff"), os.path.join(work, "in-trivy")
        gen_asff(asff, opts.findings)
        gen_trivy(trivy, opts.findings)
        n = opts.findings
        log(f"workload: {n} findings as ASFF in {len(os.listdir(asff))} files "
            f"({du(asff) / 1e6:.0f} MB), as Trivy in {len(os.listdir(trivy))} files ({du(trivy) / 1e6:.0f} MB)")

        runs = {"agent-asff": [], "baseline-asff": [], "agent-trivy": []}
        for rep in range(opts.reps):
            runs["agent-asff"].append(run_agent(opts, work, asff, n))
            runs["baseline-asff"].append(run_baseline(opts, work, asff, n))
            runs["agent-trivy"].append(run_agent(opts, work, trivy, n))
            log(f"rep {rep + 1}/{opts.reps}: " + ", ".join(f"{k} {n / v[-1][0]:.0f}/s" for k, v in runs.items()))
        results["no_quota"] = {k: summary(n, v) for k, v in runs.items()}
        a, b = results["no_quota"]["agent-asff"], results["no_quota"]["baseline-asff"]
        results["ratios"] = {"throughput": a["findings_per_s"] / b["findings_per_s"],
                             "per_cpu_second": a["findings_per_cpu_s"] / b["findings_per_cpu_s"],
                             "peak_rss": b["peak_rss_mib"] / a["peak_rss_mib"]}

        q = opts.quota_findings
        qdir = os.path.join(work, "in-quota")
        gen_asff(qdir, q, seed=3)
        quota = {}
        for name, fn in [("agent", run_agent), ("baseline", run_baseline)]:
            wall, cpu, rss = fn(opts, work, qdir, q, quota="10/30")
            quota[name] = {"goodput_pct_of_1000": q / wall / 1000 * 100, "cpu_pct_of_core": cpu / wall * 100,
                           "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss / 1024}
            log(f"quota: {name} {quota[name]['goodput_pct_of_1000']:.1f}% of 1000/s, "
                f"{quota[name]['cpu_pct_of_core']:.2f}% of a core")
        results["quota"] = quota

        memory = {}
        for size in [int(s) for s in opts.backlogs.split(",") if s]:
            mdir = os.path.join(work, f"in-{size}")
            gen_asff(mdir, size, seed=4)
            wall, cpu, rss = run_agent(opts, work, mdir, size)
            memory[str(size)] = {"peak_rss_mib": rss / 1024, "findings_per_s": size / wall}
            shutil.rmtree(mdir)
            log(f"backlog {size}: peak RSS {rss / 1024:.1f} MiB")
        results["memory"] = memory

        results["latency"] = latency(opts, work)
        log(f"latency: {results['latency']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=2)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(text + "\n")
    print(markdown(results, opts))


def du(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": os.uname().release}


def markdown(r, opts):
    rng = lambda v, fmt: f"{fmt.format(v[0])}–{fmt.format(v[1])}"
    lines = [f"Machine: {r['machine']['cpu']}, {r['machine']['cpus']} CPUs, Linux {r['machine']['kernel']}.",
             f"{opts.findings} findings, {opts.reps} repetitions (median, min–max).", "",
             "| run | findings/s | CPU s | findings per CPU-s | peak RSS MiB |", "|---|---|---|---|---|"]
    for k, v in r["no_quota"].items():
        lines.append(f"| {k} | {v['findings_per_s']:,.0f} ({rng(v['findings_per_s_range'], '{:,.0f}')}) | "
                     f"{v['cpu_s']:.2f} ({rng(v['cpu_s_range'], '{:.2f}')}) | {v['findings_per_cpu_s']:,.0f} | "
                     f"{v['peak_rss_mib']:.1f} ({rng(v['peak_rss_mib_range'], '{:.1f}')}) |")
    x = r["ratios"]
    lines += ["", f"Agent/baseline (ASFF): throughput ×{x['throughput']:.1f}, findings per CPU-second "
                  f"×{x['per_cpu_second']:.1f}, peak RSS ÷{x['peak_rss']:.1f}.", "",
              "| at hubsim's quota (10 req/s, burst 30) | goodput % of 1,000 findings/s | CPU % of one core | peak RSS MiB |",
              "|---|---|---|---|"]
    for k, v in r["quota"].items():
        lines.append(f"| {k} | {v['goodput_pct_of_1000']:.1f} | {v['cpu_pct_of_core']:.2f} | {v['peak_rss_mib']:.1f} |")
    lines += ["", "| backlog (findings) | agent peak RSS MiB | findings/s |", "|---|---|---|"]
    for k, v in r["memory"].items():
        lines.append(f"| {int(k):,} | {v['peak_rss_mib']:.1f} | {v['findings_per_s']:,.0f} |")
    l = r["latency"]
    lines += ["", f"Idle: RSS {l['idle_rss_mib']:.1f} MiB; start → READY {l['ready_ms_median']:.1f} ms "
                  f"(median of {opts.ready_reps}, {rng(l['ready_ms_range'], '{:.1f}')}); file renamed in → request at "
                  f"hubsim with flush_interval {l['flush_interval']}: p50 {l['file_to_request_ms_p50']:.0f} ms, "
                  f"p99 {l['file_to_request_ms_p99']:.0f} ms, max {l['file_to_request_ms_max']:.0f} ms (100 files)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
