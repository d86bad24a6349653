"""Run every benchmark in bench/ and print its figures."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
failed = 0
for script in sorted(HERE.glob("*.py")):
    if script.name == "run_all.py" or script.name.startswith("_"):  # _harness.py is shared code, not a bench
        continue
    print(f"== {script.name}", flush=True)
    failed |= subprocess.run([sys.executable, str(script)]).returncode
sys.exit(failed)
