"""The example project's SAM template is Dagy's own template.yaml with the project's binaries.

    python3 scripts/user-template.py          writes examples/user-project/template.yaml
    python3 scripts/user-template.py --check  exits 1 when the file differs from what it should be

The suite runs --check, so the two templates cannot drift apart.
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Dagy's binary -> the example project's binary (examples/user-project/Cargo.toml).
BINARIES = {"dagy-router": "router", "dagy-executor": "executor", "dagy-task-executor": "task-executor"}
HEADER = (
    "# Generated from Dagy's template.yaml by scripts/user-template.py: the same stack, built from\n"
    "# this project's binaries (cargo-lambda turns on the `aws` feature, see Cargo.toml).\n"
)


def render() -> str:
    text = (ROOT / "template.yaml").read_text()
    for dagy, mine in BINARIES.items():
        old = f"        Binary: {dagy}\n"
        if text.count(old) != 1:
            sys.exit(f"template.yaml should name Binary: {dagy} exactly once")
        text = text.replace(old, f"        Binary: {mine}\n")
    return HEADER + text


def main() -> None:
    target = ROOT / "examples/user-project/template.yaml"
    want = render()
    if sys.argv[1:] == ["--check"]:
        if not target.exists() or target.read_text() != want:
            sys.exit(f"{target} is stale: run python3 scripts/user-template.py")
        print(f"{target.relative_to(ROOT)} matches template.yaml")
    else:
        target.write_text(want)
        print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
