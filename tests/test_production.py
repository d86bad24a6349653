"""The production path as README's "Production" section states it: its commands run for real (outside Docker,
on the test PostgreSQL and Azurite), and the Dockerfile, docker-compose.yml, requirements and Makefile agree
with it (no Docker engine runs here to build them)."""
import json
import re
import shlex
import signal
import subprocess
import sys
import uuid

import httpx
import pytest
import yaml

from app.embedded.ports import free_port
from tests import images
from tests.helpers import ROOT, env_for, finish, put, report, wait_until

CONFIG_ERROR = "label-store: configuration error: "


def readme_production_commands() -> dict[str, list[str]]:
    """The shell lines of README's Production section, by first word after `python -m app` or `gunicorn`."""
    section = (ROOT / "README.md").read_text().split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "app"]:
            commands[words[3]] = [sys.executable, *words[1:]]
        elif words[:1] == ["gunicorn"]:
            commands["gunicorn"] = words
    assert set(commands) == {"migrate", "gunicorn", "worker"}, block
    return commands


def gunicorn_on(port: int) -> list[str]:
    """README's gunicorn line, bound to a loopback port instead of every interface."""
    words = readme_production_commands()["gunicorn"]
    bind = words.index("--bind") + 1
    return [sys.executable, "-m", "gunicorn", *words[1:bind], f"127.0.0.1:{port}", *words[bind + 1:]]


# --- the commands, run -------------------------------------------------------------------------------

def test_readme_production_commands_serve_requests_run_jobs_and_expose_metrics(
        empty_database, settings_overrides, processes, tmp_path):
    admin = {"Authentication-Key": "prod-admin", "Authentication-Secret": "a-long-random-bootstrap-secret-0123"}
    commit = uuid.uuid4().hex
    env = env_for({**settings_overrides, "db_connection_string": empty_database,
                   "azure_storage_imageset_container": f"prod-{uuid.uuid4().hex[:12]}",  # migrate creates it
                   "bootstrap_admin_email": "ops@example.org", "bootstrap_admin_key": admin["Authentication-Key"],
                   "bootstrap_admin_secret": admin["Authentication-Secret"],
                   "git_commit": commit, "home": tmp_path})  # HOME: gunicorn's control socket, ours alone
    commands = readme_production_commands()

    migrated = subprocess.run(commands["migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr

    port = free_port()
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("api", "worker")}
    api = processes.start(gunicorn_on(port), env=env, stdout=logs["api"], stderr=subprocess.STDOUT)
    processes.start(commands["worker"], env=env, stdout=logs["worker"], stderr=subprocess.STDOUT)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        def green():
            try:
                return client.get("/info/status").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(green, timeout=30, interval=0.3, message="/info/status 200 (database, container, worker)")
        assert client.get("/info/version").json()["commit"] == commit  # what the image's GIT_COMMIT sets

        created = client.post("/api/v1/image_sets", json={"title": "production path"}, headers=admin)
        assert created.status_code == 201, created.text
        image_set, picture = created.json(), images.png(seed=7)
        assert put(image_set["dropbox_url"], "beach.png", picture).status_code == 201
        assert finish(client, admin, image_set["imageset_id"], timeout=30)["status"] == "finished"
        image_id = report(client, admin, image_set["imageset_id"])["beach.png"]["image_id"]
        blob = client.get(f"/api/v1/images/{image_id}", headers=admin, follow_redirects=False)
        assert blob.status_code == 303
        assert httpx.get(blob.headers["Location"]).content == picture

        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        assert re.search(r"^# TYPE \w+ counter$", metrics.text, re.M)

    api.send_signal(signal.SIGTERM)
    assert api.wait(timeout=30) == 0
    for name, log in logs.items():
        log.close()
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name


@pytest.mark.parametrize("command", ["migrate", "worker", "gunicorn"])
def test_without_storage_settings_each_command_stops_with_one_line(command, tmp_path):
    env = env_for({"db_connection_string": "postgresql://ops@127.0.0.1:1/labelstore",
                   "api_key_pepper": "p" * 32, "home": tmp_path})
    args = gunicorn_on(free_port()) if command == "gunicorn" else readme_production_commands()[command]
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    output = result.stdout + result.stderr
    assert "Traceback" not in output
    problems = {line for line in output.splitlines() if line.startswith(CONFIG_ERROR)}
    assert len(problems) == 1, output
    assert problems.pop().startswith(f"{CONFIG_ERROR}AZURE_STORAGE_CONNECTION_STRING: not set")
    if command == "gunicorn":
        assert result.returncode == 4  # "App failed to load": gunicorn stops instead of restarting workers
    else:
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0, result.stderr


# --- the files that build it ----------------------------------------------------------------------------

def requirement_names(name: str) -> dict[str, str]:
    """Package name -> pinned line of a requirements file, following `-r`."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= requirement_names(line[3:].strip())
        elif line:
            found[re.split(r"[\[=<>~ ]", line, 1)[0].lower()] = line
    return found


def test_production_installs_only_what_production_runs():
    production = requirement_names("requirements.txt")
    assert "pgserver" not in production and "pytest" not in production
    assert all("==" in pin for pin in production.values()), production
    assert re.fullmatch(r"uvicorn-worker==[\d.]+", production["uvicorn-worker"])
    assert "pgserver" in requirement_names("requirements-dev.txt")
    assert {"pgserver", "pytest"} <= set(requirement_names("test_requirements.txt"))

    install = subprocess.run(["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "-r requirements.txt" in install.stdout
    assert not re.search(r"npm|node_modules|requirements-dev|test_requirements", install.stdout), install.stdout
    run = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "requirements-dev.txt" in run.stdout and "npm ci" in run.stdout


def dockerfile() -> list[tuple[str, str]]:
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def test_image_serves_the_readme_command_with_its_commit_and_production_packages_only():
    instructions = dockerfile()
    cmd = [json.loads(arg) for op, arg in instructions if op == "CMD"]
    assert cmd == [readme_production_commands()["gunicorn"]]  # exec form, no migrate in it
    assert ("ARG", 'GIT_COMMIT=""') in instructions and ("ENV", "GIT_COMMIT=${GIT_COMMIT}") in instructions
    installs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert installs == ["pip install --no-cache-dir -r requirements.txt"]
    for op, arg in instructions:
        if op == "COPY":
            assert all((ROOT / source).exists() for source in arg.split()[:-1]), arg


def test_compose_migrates_once_then_starts_the_api_and_worker_on_healthy_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "azurite", "migrate", "api", "worker"}
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], needed
    runs = {name: service.get("command") for name, service in services.items()}
    assert runs["migrate"] == ["python", "-m", "app", "migrate"]
    assert runs["worker"] == ["python", "-m", "app", "worker"]
    assert runs["api"] is None  # the image's command: README's gunicorn line
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                 "azurite": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    for name in ("postgres", "azurite", "api", "worker"):
        assert services[name]["restart"] == "unless-stopped", name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    probe = " ".join(services["api"]["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8080(/[\w/]+)", probe).group(1)
    assert path in yaml.safe_load((ROOT / "app" / "openapi" / "info.yaml").read_text())["paths"]
    for name in ("migrate", "api", "worker"):
        assert services[name]["build"]["args"] == {"GIT_COMMIT": "${GIT_COMMIT:-}"}
        assert services[name]["environment"]["API_KEY_PEPPER"].startswith("${API_KEY_PEPPER:?")
