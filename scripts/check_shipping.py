"""Checks of the shipping files that need no Docker engine.

  check_shipping.py static BINARY    compose files (as docker-compose resolves
                                     them), .gitpod.yml, .env.example, the
                                     Dockerfiles and .dockerignore, against
                                     the variables BINARY's --help lists;
                                     the README's first screen and LICENSE
  check_shipping.py run BINARY       the release binary run the way the
                                     production Dockerfile's ENV, CMD and
                                     HEALTHCHECK run it, then SIGTERM

Run by scripts/check-shipping with the repository's .venv (PyYAML comes with
yamllint). Talks to nothing but 127.0.0.1.
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))

# The AWS SDK reads these itself, so --help cannot list them; the backend
# service passes them through for X-Ray's api and otlp modes and CloudWatch.
SDK_VARIABLES = ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"]
# Variables of --help the compose files do not pass through from the host,
# and why; .env.example, which only feeds compose, leaves them out too.
SET_BY_THE_IMAGES = {
    "PORT": "the Dockerfiles set 4567, the port compose publishes",
    "BIND_ADDRESS": "the Dockerfiles set 0.0.0.0: in a container the default 127.0.0.1 is unreachable",
    "DATABASE_PATH": "the Dockerfiles set /data/cruddur.db, in the data volume",
}
SET_BY_COMPOSE = {
    "AWS_XRAY_DAEMON_ADDRESS": "compose sets the xray-daemon service's address",
    "AWS_XRAY_URL": "compose builds it from the Gitpod workspace host",
}
SECRETS = ["HONEYCOMB_API_KEY", "OTEL_EXPORTER_OTLP_HEADERS", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ROLLBAR_ACCESS_TOKEN"]

failures = []


def help_variables(binary):
    """Every variable `BINARY --help` names (`[env: NAME=...]`, or
    `[env: NAME]` for a secret, whose value clap hides), in order."""
    clean = {"PATH": os.environ["PATH"]}
    result = subprocess.run([binary, "--help"], env=clean, capture_output=True, text=True,
                            check=True, timeout=30)
    names = re.findall(r"\[env: ([A-Z][A-Z0-9_]*)[=\]]", result.stdout)
    if not names:
        sys.exit(f"{binary} --help names no variable")
    return list(dict.fromkeys(names))


def passed_through(variables):
    """What the backend service must take from the host: every variable
    but those the images or compose set, and the AWS SDK's own."""
    return [name for name in variables if name not in SET_BY_THE_IMAGES and name not in SET_BY_COMPOSE] \
        + SDK_VARIABLES


def check(condition, what):
    if condition:
        print(f"  ok    {what}")
    else:
        print(f"  FAIL  {what}")
        failures.append(what)


def compose_config(path, env, profiles=()):
    """The file as docker-compose itself resolves it, with only `env` set
    (and an empty env file, so a developer's .env cannot change the answer)."""
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        command = ["docker-compose", "--env-file", empty.name, "-f", path]
        for profile in profiles:
            command += ["--profile", profile]
        clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
        result = subprocess.run(command + ["config"], cwd=ROOT, env={**clean, **env},
                                capture_output=True, text=True, check=True)
    return yaml.safe_load(result.stdout)


def ports(service):
    """Ports as `published:target/protocol` strings, from either syntax."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append(f"{port.get('published')}:{port['target']}/{port.get('protocol', 'tcp')}")
        else:
            text = str(port)
            found.append(text if "/" in text else text + "/tcp")
    return found


def check_compose(path, backend_dockerfile, variables):
    print(f"-- {path}")
    fake = {
        "HONEYCOMB_API_KEY": "hcaik_check_0000",
        "AWS_ACCESS_KEY_ID": "AKIACHECK",
        "ROLLBAR_ACCESS_TOKEN": "rollbar_check",
        "GITPOD_WORKSPACE_ID": "ws-check",
        "GITPOD_WORKSPACE_CLUSTER_HOST": "ws.gitpod.example",
    }
    profiles = ("collector", "postgres", "prometheus") if path == "docker-compose.yml" \
        else ("postgres", "prometheus")
    config = compose_config(path, fake, profiles)
    bare = compose_config(path, {}, profiles)
    services = config["services"]
    expected = ["backend", "frontend", "xray-daemon", "db", "prometheus"] \
        + (["otel-collector"] if "collector" in profiles else [])
    check(sorted(services) == sorted(expected), f"services are {', '.join(expected)}")

    backend = services["backend"]
    check(backend["build"]["dockerfile"] == backend_dockerfile,
          f"backend is built from {backend_dockerfile}")
    check("4567:4567/tcp" in ports(backend), "backend publishes 4567")
    env = backend["environment"]
    missing = [name for name in passed_through(variables) if name not in env]
    check(not missing, f"backend passes every variable of --help through (missing: {missing})")
    overridden = [name for name in SET_BY_THE_IMAGES if name in env]
    check(not overridden, f"backend leaves {', '.join(SET_BY_THE_IMAGES)} to the image (set: {overridden})")
    check(env["HONEYCOMB_API_KEY"] == "hcaik_check_0000"
          and env["ROLLBAR_ACCESS_TOKEN"] == "rollbar_check"
          and env["AWS_ACCESS_KEY_ID"] == "AKIACHECK",
          "secrets set on the host reach the backend")
    check(all(bare["services"]["backend"]["environment"][name] is None for name in SECRETS),
          "secrets unset on the host stay unset (none is written in the file)")
    check(env["AWS_XRAY_DAEMON_ADDRESS"] == "xray-daemon:2000", "AWS_XRAY_DAEMON_ADDRESS=xray-daemon:2000")
    check(env["AWS_XRAY_URL"] == "*4567-ws-check.ws.gitpod.example*",
          "AWS_XRAY_URL is built from the Gitpod workspace host")
    bare_env = bare["services"]["backend"]["environment"]
    check(bare_env["FRONTEND_URL"] == "http://localhost:3000"
          and bare_env["BACKEND_URL"] == "http://localhost:4567",
          "FRONTEND_URL and BACKEND_URL default to localhost")
    if backend_dockerfile == "Dockerfile.dev":
        targets = [str(volume).split(":")[1] if isinstance(volume, str) else volume["target"]
                   for volume in backend.get("volumes", [])]
        check("/app" in targets, "the dev backend has the source mounted at /app")

    frontend = services["frontend"]
    check("3000:3000/tcp" in ports(frontend), "frontend publishes 3000")

    xray = services["xray-daemon"]
    command = xray.get("command")
    command = shlex.split(command) if isinstance(command, str) else command
    check(xray["image"].split(":")[0] == "amazon/aws-xray-daemon", "xray-daemon runs amazon/aws-xray-daemon")
    check("-o" in command and command[command.index("-b") + 1] == "xray-daemon:2000",
          "xray-daemon runs with -o -b xray-daemon:2000")
    check("AWS_REGION" in xray["environment"] and xray["environment"]["AWS_REGION"],
          "xray-daemon gets AWS_REGION")
    check("2000:2000/udp" in ports(xray), "xray-daemon publishes 2000/udp")
    if "collector" in profiles:
        check(services["otel-collector"].get("profiles") == ["collector"],
              "otel-collector only runs under the collector profile")
    db = services["db"]
    check(db.get("profiles") == ["postgres"], "db only runs under the postgres profile")
    check("db" not in backend.get("depends_on", {}), "backend does not depend on db (only in a profile)")
    check(ports(db) == ["127.0.0.1:5432:5432/tcp"], "db publishes 5432 on 127.0.0.1 only")
    check(bare["services"]["backend"]["environment"]["DATABASE_URL"] is None,
          "DATABASE_URL unset on the host stays unset (SQLite), not empty")
    prometheus = services["prometheus"]
    check(prometheus.get("profiles") == ["prometheus"], "prometheus only runs under the prometheus profile")
    check("prometheus" not in backend.get("depends_on", {}),
          "backend does not depend on prometheus (only in a profile)")
    check(ports(prometheus) == ["127.0.0.1:9090:9090/tcp"], "prometheus publishes 9090 on 127.0.0.1 only")
    command = prometheus.get("command")
    command = shlex.split(command) if isinstance(command, str) else command
    check("--config.file=/etc/prometheus/prometheus.yml" in command
          and "--enable-feature=exemplar-storage" in command,
          "prometheus reads /etc/prometheus/prometheus.yml and keeps exemplars")
    mounts = [str(volume).split(":")[:2] if isinstance(volume, str) else [volume.get("source"), volume["target"]]
              for volume in prometheus.get("volumes", [])]
    config_file = os.path.join(ROOT, "prometheus.yml")
    check([os.path.realpath(config_file), "/etc/prometheus/prometheus.yml"]
          in [[os.path.realpath(source or ""), target] for source, target in mounts],
          "prometheus has ./prometheus.yml mounted at /etc/prometheus/prometheus.yml")
    scrape = {}
    if os.path.exists(config_file):
        with open(config_file) as file:
            try:
                scrape = yaml.safe_load(file) or {}
            except yaml.YAMLError:
                pass
    targets = [target for job in scrape.get("scrape_configs", []) for static in job.get("static_configs", [])
               for target in static.get("targets", [])]
    check("backend:4567" in targets, "prometheus.yml has a scrape job targeting backend:4567")

    networks = {name for service in services.values() for name in service.get("networks", {})}
    check(networks == {"cruddur"} and list(config["networks"]) == ["cruddur"],
          "every service is on the one network `cruddur`")


def check_gitpod():
    print("-- .gitpod.yml")
    with open(os.path.join(ROOT, ".gitpod.yml")) as file:
        gitpod = yaml.safe_load(file)
    by_port = {port["port"]: port for port in gitpod["ports"]}
    check(by_port.get(3000, {}).get("onOpen") == "open-browser"
          and by_port[3000].get("visibility") == "public",
          "3000 (frontend) opens in the browser, public")
    check(by_port.get(4567, {}).get("visibility") == "public",
          "4567 (backend) is public so the browser can call it")
    check(2000 in by_port, "2000 (xray daemon) is listed")
    tasks = gitpod["tasks"]
    text = "\n".join(str(task.get(key, "")) for task in tasks for key in ("before", "init", "command"))
    check("docker-compose up" in text, "a task starts the stack")
    check("docker-compose build" in text, "a task builds the images")
    for name, port in (("FRONTEND_URL", 3000), ("BACKEND_URL", 4567)):
        check(f'{name}="https://{port}-${{GITPOD_WORKSPACE_ID}}.${{GITPOD_WORKSPACE_CLUSTER_HOST}}"' in text,
              f"{name} is the workspace's {port} URL")


def check_env_example(variables):
    print("-- .env.example")
    with open(os.path.join(ROOT, ".env.example")) as file:
        lines = file.read().splitlines()
    documented, undocumented = set(), []
    described = False  # a "# text" line since the last blank line
    for line in lines:
        name, equals, _ = line.lstrip("#").partition("=")
        if not line.strip():
            described = False
        elif equals and name.isidentifier() and name.isupper():
            documented.add(name)
            if not described:
                undocumented.append(name)
        elif line.startswith("# "):
            described = True
    missing = [name for name in passed_through(variables) if name not in documented]
    check(not missing, f"every variable compose passes through is in .env.example (missing: {missing})")
    misleading = sorted(documented & (set(SET_BY_THE_IMAGES) | set(SET_BY_COMPOSE)))
    check(not misleading, f"none that compose would ignore is offered (offered: {misleading})")
    check(not undocumented, f"every variable has a comment (not: {undocumented})")
    active = [line for line in lines if line and not line.startswith("#")]
    check(not active, "nothing is set by default (an empty value would be a value)")


def dockerfile_instructions(path):
    """(instruction, argument) pairs of the last stage, continuations joined."""
    with open(os.path.join(ROOT, path)) as file:
        text = file.read().replace("\\\n", " ")
    stages = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), argument.strip()))
    return stages[-1]


def image_env(path):
    """The ENV of a Dockerfile's last stage."""
    env = {}
    for instruction, argument in dockerfile_instructions(path):
        if instruction == "ENV":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def runtime_spec():
    last = dockerfile_instructions("Dockerfile")
    spec = {"env": image_env("Dockerfile")}
    for instruction, argument in last:
        if instruction == "CMD":
            spec["cmd"] = json.loads(argument)
        elif instruction == "HEALTHCHECK":
            spec["healthcheck"] = json.loads(argument[argument.index("CMD") + 3:])
        elif instruction in ("FROM", "USER", "EXPOSE", "VOLUME"):
            spec[instruction.lower()] = argument
    return spec


def check_dockerfiles():
    print("-- Dockerfile, Dockerfile.dev, .dockerignore")
    spec = runtime_spec()
    check(spec["from"].startswith("gcr.io/distroless/cc-debian12"), "the runtime image is distroless")
    check(spec.get("user", "root").split(":")[0] not in ("root", "0"), "the runtime user is not root")
    check(spec.get("expose") == "4567", "EXPOSE 4567")
    check(spec["env"].get("PORT") == "4567" and spec["env"].get("BIND_ADDRESS") == "0.0.0.0"
          and spec["env"].get("DATABASE_PATH") == "/data/cruddur.db",
          "ENV PORT=4567 BIND_ADDRESS=0.0.0.0 DATABASE_PATH=/data/cruddur.db")
    dev = image_env("Dockerfile.dev")
    check(dev.get("PORT") == "4567" and dev.get("BIND_ADDRESS") == "0.0.0.0"
          and dev.get("DATABASE_PATH") == "/data/cruddur.db",
          "Dockerfile.dev: ENV PORT=4567 BIND_ADDRESS=0.0.0.0 DATABASE_PATH=/data/cruddur.db")
    check(spec.get("healthcheck", [])[-1:] == ["healthcheck"], "HEALTHCHECK runs `cruddur-backend healthcheck`")
    for path in ("Dockerfile", "Dockerfile.dev"):
        with open(os.path.join(ROOT, path)) as file:
            text = file.read().upper()
        leaked = [name for name in SECRETS if f"{name}=" in text or f"ARG {name}" in text]
        check(not leaked, f"{path} bakes in no secret ({leaked})")
    with open(os.path.join(ROOT, ".dockerignore")) as file:
        entries = [line.strip() for line in file if line.strip() and not line.startswith("#")]
    check(entries[0] == "*" and set(entries[1:]) == {"!Cargo.toml", "!Cargo.lock", "!backend/"},
          ".dockerignore lets in only Cargo.toml, Cargo.lock and backend/")


def version(text):
    """`1.94.1` as (1, 94, 1); anything else as () (older than any)."""
    return tuple(int(part) for part in text.split(".")) if re.fullmatch(r"[0-9]+(\.[0-9]+)*", text) else ()


def check_docs():
    """What the README's first screen and the LICENSE promise, against
    Cargo.toml and the Dockerfiles."""
    print("-- README.md, LICENSE, Cargo.toml")
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as file:
        package = tomllib.load(file)["package"]
    rust = package.get("rust-version", "")
    check(rust, f"Cargo.toml names the Rust it needs (rust-version = {rust!r})")
    with open(os.path.join(ROOT, "README.md")) as file:
        first_screen = file.read().split("\n## ", 1)[0]
    check(f"Rust {rust} or newer" in first_screen,
          f"README's first screen says Rust {rust} or newer is needed")
    check("apt-get" in first_screen and "root" in first_screen,
          "README's first screen says the test command installs with apt-get, as root")
    for path in ("Dockerfile", "Dockerfile.dev"):
        with open(os.path.join(ROOT, path)) as file:
            image_rust = re.search(r"^ARG RUST_VERSION=([0-9.]+)$", file.read(), re.M)
        check(image_rust and version(rust) and version(image_rust.group(1)) >= version(rust),
              f"{path} builds with Rust {image_rust and image_rust.group(1)} (at least {rust})")
    license_path = os.path.join(ROOT, "LICENSE")
    license_text = ""
    if os.path.exists(license_path):
        with open(license_path) as file:
            license_text = " ".join(file.read().split())
    check(package.get("license") == "MIT" and license_text.startswith("MIT License Copyright (c) ")
          and "Permission is hereby granted, free of charge, to any person obtaining a copy" in license_text
          and license_text.endswith("OTHER DEALINGS IN THE SOFTWARE."),
          "LICENSE is the MIT License Cargo.toml names")
    check("Copyright (c) 2026 the cruddur-backend authors" in license_text,
          "LICENSE: Copyright (c) 2026 the cruddur-backend authors")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_binary(binary):
    """The container's life, without the container: Dockerfile ENV, CMD,
    HEALTHCHECK and a SIGTERM, with the image's paths mapped to this machine."""
    print(f"-- {binary} as the image runs it")
    spec = runtime_spec()
    image_binary = spec["cmd"][0]
    check(spec["healthcheck"][0] == image_binary, "CMD and HEALTHCHECK run the same binary")
    with tempfile.TemporaryDirectory() as data:
        # The image strips symbols (CARGO_PROFILE_RELEASE_STRIP); distroless/cc-debian12
        # itself is about 24 MB unpacked, so the binary must stay under 16 MB for a < 40 MB
        # image. Only a release build says anything about that; CI runs the debug one.
        if "/release/" in binary:
            stripped = os.path.join(data, "stripped")
            subprocess.run(["strip", "-o", stripped, binary], check=True)
            size = os.path.getsize(stripped) / 1e6
            os.remove(stripped)
            check(size < 16, f"the stripped binary is {size:.1f} MB (image about {size + 24:.0f} MB, target < 40 MB)")
        else:
            print("  --    image size not measured for a debug build (bench/run builds release)")
        env = dict(spec["env"])
        env["DATABASE_PATH"] = env["DATABASE_PATH"].replace("/data/", data + "/", 1)
        # The image listens on 4567; here a free port keeps clear of anything running.
        env["PORT"] = str(free_port())
        env["PATH"] = "/usr/bin:/bin"
        # Off AWS, the SDK chain CloudWatch uses must not look for instance metadata.
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        cmd = [binary] + spec["cmd"][1:]
        healthcheck = [binary] + spec["healthcheck"][1:]

        before = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=10)
        check(before.returncode == 1 and "cannot connect" in before.stderr,
              "HEALTHCHECK fails while nothing listens")
        started = time.monotonic()
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        healthy = None
        while time.monotonic() - started < 30 and server.poll() is None:
            probe = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=10)
            if probe.returncode == 0:
                healthy = time.monotonic() - started
                break
            time.sleep(0.1)
        check(healthy is not None, f"HEALTHCHECK passes {healthy or 0:.2f}s after start")
        if healthy is not None:
            with urllib.request.urlopen(f"http://127.0.0.1:{env['PORT']}/api/health-check", timeout=5) as answer:
                body = json.load(answer)
            check(answer.status == 200 and body.get("success") is True,
                  "GET /api/health-check answers {\"success\": true}")
        server.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            stdout, stderr = server.communicate()
        check(server.returncode == 0, f"SIGTERM ends it with exit 0 (got {server.returncode})")
        check(os.path.exists(env["DATABASE_PATH"]), "the database is created under the data volume")
        lines = [line for line in stdout.splitlines() if line.strip()]
        try:
            records = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            records = []
        parsed = bool(records) and all(isinstance(record, dict) for record in records)
        spans = sum(1 for record in records if "span" in record)
        check(parsed and spans, f"LOG_FORMAT=json: all {len(lines)} lines are JSON, {spans} spans among them")
        if failures:
            print(stderr)


def main():
    if sys.argv[1:2] == ["static"] and len(sys.argv) == 3:
        variables = help_variables(sys.argv[2])
        print(f"-- {sys.argv[2]} --help names {len(variables)} variables")
        check_compose("docker-compose.yml", "Dockerfile.dev", variables)
        check_compose("docker-compose.prod.yml", "Dockerfile", variables)
        check_gitpod()
        check_env_example(variables)
        check_dockerfiles()
        check_docs()
    elif sys.argv[1:2] == ["run"] and len(sys.argv) == 3:
        run_binary(sys.argv[2])
    else:
        sys.exit(__doc__)
    if failures:
        sys.exit(f"{len(failures)} shipping check(s) failed")


if __name__ == "__main__":
    main()
