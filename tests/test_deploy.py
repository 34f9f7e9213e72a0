"""The scaled-out deployment file is valid Compose and wires the processes as documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "infra" / "deploy"


def test_compose_file_parses_and_runs_each_process_apart(tmp_path: Path) -> None:
    checker = shutil.which("docker-compose")
    assert checker, "docker-compose is missing: `make test` installs it"
    for name in ("compose.yaml", "Dockerfile", "carbonx.env.example"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    (tmp_path / "carbonx.env").write_text((DEPLOY / "carbonx.env.example").read_text())
    result = subprocess.run(
        [checker, "-f", str(tmp_path / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"postgres", "kafka", "engine", "relay", "gateway"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["engine"]["command"][:2] == ["engine", "--kafka"]
    assert services["relay"]["command"][0] == "relay"
    assert services["gateway"]["command"][0] == "gateway"
    for process in ("engine", "relay", "gateway"):
        env = services[process]["environment"]
        assert env["CARBONX_DATABASE_URL"].startswith("postgresql://")
        assert env["CARBONX_KAFKA_BOOTSTRAP"] == "kafka:9092"
