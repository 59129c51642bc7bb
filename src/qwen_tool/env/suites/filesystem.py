"""File system: an in-memory tree of folders and text files, absolute paths (stateful)."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from qwen_tool.env.suite import Suite, tool_method
from qwen_tool.env.suites._common import call, make_task
from qwen_tool.env.task import Task

WORDS = ["alpha", "budget", "draft", "notes", "summary", "todo", "q3", "invoice"]


class FileSystemSuite(Suite):
    """Paths are absolute, '/'-separated; `data["files"]` maps file paths to text, `data["folders"]` lists folders."""

    name = "filesystem"
    domain = "file system"
    description = "Simulated file system: list, read, write, move, copy, search."

    def setup(self) -> None:
        self.data["folders"] = ["/", "/docs", "/photos", "/projects", "/projects/site"]
        self.data["files"] = {}
        for folder in self.data["folders"][1:]:
            for _ in range(2):
                name = f"{self.rng.choice(WORDS)}_{self.rng.randint(1, 9)}.txt"
                self.data["files"][f"{folder}/{name}"] = " ".join(self.rng.choices(WORDS, k=6))

    @staticmethod
    def _norm(path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"path '{path}' must be absolute (start with '/')")
        return "/" + "/".join(p for p in path.split("/") if p)

    def _parent_exists(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in self.data["folders"]:
            raise FileNotFoundError(f"folder '{parent}' does not exist")

    def _file(self, path: str) -> str:
        path = self._norm(path)
        if path not in self.data["files"]:
            raise FileNotFoundError(f"no file '{path}'")
        return path

    @tool_method
    def list_folder(self, path: str, include_folders: bool = True) -> list[str]:
        """Names in a folder (folders end with '/').

        Args:
            path: Absolute folder path.
            include_folders: Also list sub-folders.
        """
        path = self._norm(path)
        if path not in self.data["folders"]:
            raise FileNotFoundError(f"no folder '{path}'")
        prefix = path.rstrip("/") + "/"
        files = [p[len(prefix):] for p in self.data["files"] if p.startswith(prefix) and "/" not in p[len(prefix):]]
        folders = [f[len(prefix):] + "/" for f in self.data["folders"]
                   if f.startswith(prefix) and f != path and "/" not in f[len(prefix):]] if include_folders else []
        return sorted(folders) + sorted(files)

    @tool_method
    def read_text_file(self, path: str, max_chars: int | None = None) -> str:
        """Text of a file.

        Args:
            path: Absolute file path.
            max_chars: Return at most this many characters.
        """
        text = self.data["files"][self._file(path)]
        return text if max_chars is None else text[:max_chars]

    @tool_method
    def write_text_file(self, path: str, content: str, mode: Literal["overwrite", "append"] = "overwrite") -> dict:
        """Create or change a text file.

        Args:
            path: Absolute file path; its folder must exist.
            content: Text to write.
            mode: Replace the file or append to it.
        """
        path = self._norm(path)
        self._parent_exists(path)
        previous = self.data["files"].get(path, "") if mode == "append" else ""
        self.data["files"][path] = previous + content
        return {"path": path, "size": len(self.data["files"][path])}

    @tool_method
    def remove_path(self, path: str, recursive: bool = False) -> dict[str, Any]:
        """Delete a file, or a folder (non-empty folders need recursive=true).

        Args:
            path: Absolute path.
            recursive: Delete a folder with its content.
        """
        path = self._norm(path)
        if path in self.data["files"]:
            del self.data["files"][path]
            return {"deleted": path}
        if path not in self.data["folders"] or path == "/":
            raise FileNotFoundError(f"no file or removable folder '{path}'")
        inside = [p for p in [*self.data["files"], *self.data["folders"]] if p.startswith(path + "/")]
        if inside and not recursive:
            raise OSError(f"folder '{path}' is not empty; pass recursive=true")
        self.data["files"] = {k: v for k, v in self.data["files"].items() if not k.startswith(path + "/")}
        self.data["folders"] = [f for f in self.data["folders"] if f != path and not f.startswith(path + "/")]
        return {"deleted": path}

    @tool_method
    def move_path(self, source: str, destination: str) -> dict[str, Any]:
        """Move or rename a file.

        Args:
            source: Absolute path of the file.
            destination: New absolute path (an existing folder keeps the file name).
        """
        source = self._file(source)
        destination = self._norm(destination)
        if destination in self.data["folders"]:
            destination = destination.rstrip("/") + "/" + source.rsplit("/", 1)[1]
        self._parent_exists(destination)
        self.data["files"][destination] = self.data["files"].pop(source)
        return {"from": source, "to": destination}

    @tool_method
    def copy_path(self, source: str, destination: str) -> dict[str, Any]:
        """Copy a file.

        Args:
            source: Absolute path of the file.
            destination: Absolute path of the copy (an existing folder keeps the file name).
        """
        source = self._file(source)
        destination = self._norm(destination)
        if destination in self.data["folders"]:
            destination = destination.rstrip("/") + "/" + source.rsplit("/", 1)[1]
        self._parent_exists(destination)
        self.data["files"][destination] = self.data["files"][source]
        return {"from": source, "to": destination}

    @tool_method
    def make_folder(self, path: str) -> dict[str, Any]:
        """Create a folder (its parent must exist).

        Args:
            path: Absolute folder path.
        """
        path = self._norm(path)
        self._parent_exists(path)
        if path in self.data["folders"]:
            raise FileExistsError(f"folder '{path}' exists")
        self.data["folders"].append(path)
        return {"created": path}

    @tool_method
    def find_paths(self, pattern: str, folder: str = "/") -> list[str]:
        """File paths under a folder whose name matches a glob pattern such as '*.txt'.

        Args:
            pattern: Glob on the file name.
            folder: Absolute folder to search in.
        """
        prefix = self._norm(folder).rstrip("/") + "/"
        return sorted(p for p in self.data["files"] if p.startswith(prefix) and fnmatch.fnmatch(p.rsplit("/", 1)[1],
                                                                                               pattern))

    @tool_method
    def path_info(self, path: str) -> dict[str, Any]:
        """Kind and size of a path.

        Args:
            path: Absolute path.
        """
        path = self._norm(path)
        if path in self.data["files"]:
            return {"path": path, "kind": "file", "size": len(self.data["files"][path])}
        if path in self.data["folders"]:
            return {"path": path, "kind": "folder", "entries": len(self.list_folder(path))}
        raise FileNotFoundError(f"no file or folder '{path}'")

    def argument_pool(self) -> dict[str, list[Any]]:
        files = sorted(self.data["files"])
        return {"path": files + self.data["folders"], "source": files, "destination": self.data["folders"],
                "folder": self.data["folders"], "pattern": ["*.txt", "notes*"], "content": ["hello", "TODO: review"]}

    @classmethod
    def tasks(cls) -> list[Task]:
        return [
            make_task("filesystem", 0, "Make a folder /archive and write 'done' into /archive/log.txt.",
                      [[call("make_folder", path="/archive")],
                       [call("write_text_file", path="/archive/log.txt", content="done")]], "Created."),
            make_task("filesystem", 1, "What is in /docs, and how many text files are there overall?",
                      [[call("list_folder", path="/docs"), call("find_paths", pattern="*.txt")]], "Listed."),
            make_task("filesystem", 2, "Delete the /photos folder with everything in it.",
                      [[call("remove_path", path="/photos", recursive=True)]], "Deleted."),
        ]
