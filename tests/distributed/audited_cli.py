"""`qwen-tool ARGS` as one process of a multi-process launch, recording the files it opens for writing under a folder.

Environment: WRITES_WATCHED (the folder), WRITES_REPORT_DIR (where `rank<RANK>.json` lists the paths written, relative
to the folder, and whether the process group was still open when the command returned). Python's audit hook sees
every `open` made from Python (the model's config, the logs, the checkpoint's state file, the tokenizer's JSON files),
not writes made inside compiled code (safetensors, torch's zip writer).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT


def main() -> None:
    watched = os.path.abspath(os.environ["WRITES_WATCHED"]) + os.sep
    report = Path(os.environ["WRITES_REPORT_DIR"]) / f"rank{os.environ['RANK']}.json"
    written: set[str] = set()

    def record(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], str | bytes | os.PathLike):
            return
        path, _, flags = args
        absolute = os.path.abspath(os.fsdecode(path))
        if flags & WRITE_FLAGS and absolute.startswith(watched):
            written.add(absolute.removeprefix(watched))

    sys.addaudithook(record)
    from qwen_tool.cli import main as cli

    try:
        cli(sys.argv[1:])
    finally:
        import torch.distributed as dist

        report.write_text(json.dumps({"written": sorted(written), "group_open": dist.is_initialized()}))


if __name__ == "__main__":
    main()
