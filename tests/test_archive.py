"""Safe extraction (facerecon.data.archive) and its use by the FaceScape import CLI.

Every malicious archive must be refused as a whole by the import command line
(exit code 2, the offending member named) before anything is written: neither
the destination nor its parent folder holds anything new afterwards. So must an
archive holding one path twice with different contents (identical copies are
extracted once) or a file whose path is also a folder of another member.
"""

from __future__ import annotations

import io as bytes_io
import stat
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from facerecon import io
from facerecon.data import archive, facescape

SCAN = "1/models_reg/1_neutral.obj"
OBJ_BYTES = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def make_zip(path: Path, members: list[tuple[str, bytes, int | None]]) -> Path:
    """Zip of (name, data, unix mode or None) members; the mode goes in the external attributes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """Tar of ready TarInfo entries (links, devices) and (name, data) regular files."""
    with tarfile.open(path, "w:gz") as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, bytes_io.BytesIO(member[1]))
    return path


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


REG = stat.S_IFREG | 0o644
ZIP_CASES = {
    "traversal": ([("../evil", b"x", REG)], "../evil"),
    "nested-traversal": ([("1/models_reg/../../../evil", b"x", REG)], "../../../evil"),
    "absolute": ([("/tmp/evil", b"x", REG)], "/tmp/evil"),
    "symlink": ([("1/models_reg/link.obj", b"/etc/passwd", stat.S_IFLNK | 0o777)], "link.obj"),
    "device": ([("1/dev", b"", stat.S_IFCHR | 0o600)], "1/dev"),
    "oversize": ([("1/models_reg/2_smile.obj", b"\0" * 3_000_000, REG)], "2_smile.obj"),
}
TAR_CASES = {
    "traversal": ([("../evil", b"x")], "../evil"),
    "absolute": ([("/tmp/evil", b"x")], "/tmp/evil"),
    "symlink": ([tar_entry("1/models_reg/link.obj", tarfile.SYMTYPE, "/etc/passwd")],
                "link.obj"),
    "hardlink": ([tar_entry("1/models_reg/hard.obj", tarfile.LNKTYPE, "/etc/passwd")],
                 "hard.obj"),
    "device": ([tar_entry("1/dev", tarfile.CHRTYPE)], "1/dev"),
    "fifo": ([tar_entry("1/fifo", tarfile.FIFOTYPE)], "1/fifo"),
    "oversize": ([("1/models_reg/2_smile.obj", b"\0" * 3_000_000)], "2_smile.obj"),
}
LIMIT_GB = "0.001"  # 1 MB: the oversize members declare 3 MB


def snapshot(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def run_import(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the import CLI in-process; (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        io.run_cli(facescape.main, ["import", *argv])
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("fmt,case", [("zip", c) for c in ZIP_CASES]
                         + [("tar", c) for c in TAR_CASES])
def test_malicious_archive_is_refused_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, case: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    if fmt == "zip":
        bad, named = ZIP_CASES[case]
        path = make_zip(sources / "bad.zip", [(SCAN, OBJ_BYTES, REG), *bad])
    else:
        bad, named = TAR_CASES[case]
        path = make_tar(sources / "bad.tar.gz", [(SCAN, OBJ_BYTES), *bad])
    work = tmp_path / "work"  # the destination's parent
    work.mkdir()
    code, err = run_import(capsys, str(path), "--dest", str(work / "data"), "--subjects", "1",
                           "--expressions", "1", "--max-uncompressed-gb", LIMIT_GB)
    assert code == 2
    assert str(path) in err and named in err and "refused" in err
    assert snapshot(work) == set() and snapshot(tmp_path) == {"sources", f"sources/{path.name}",
                                                              "work"}


def test_refusal_lists_every_unsafe_member(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "bad.zip", [("../a", b"", REG), ("/b", b"", REG),
                                          ("c", b"", stat.S_IFLNK | 0o777)])
    with pytest.raises(io.InputError, match=r"3 unsafe member\(s\).*'\.\./a'.*'/b'.*'c'"):
        archive.inventory(path, None)


def test_refusal_before_extraction_of_several_archives(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A good archive followed by a bad one: nothing at all is extracted."""
    good = make_zip(tmp_path / "good.zip", [(SCAN, OBJ_BYTES, REG)])
    bad = make_tar(tmp_path / "bad.tar", [("2/models_reg/1_neutral.obj", OBJ_BYTES),
                                          tar_entry("2/x", tarfile.SYMTYPE, "/etc")])
    work = tmp_path / "work"
    work.mkdir()
    code, err = run_import(capsys, str(good), str(bad), "--dest", str(work / "data"),
                           "--subjects", "1", "2", "--expressions", "1")
    assert code == 2 and "2/x" in err and "symlink" in err
    assert snapshot(work) == set()


def test_extract_selected_members_renamed_and_merged(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "ok.tar", [("top/a.txt", b"alpha"), ("top/sub/b.txt", b"beta"),
                                          ("top/c.txt", b"gamma")])
    dest = tmp_path / "dest"
    written = archive.extract(path, dest, {"top/a.txt": "x/a.txt"}, max_uncompressed_bytes=100)
    assert written == [dest / "x/a.txt"] and (dest / "x/a.txt").read_bytes() == b"alpha"
    assert snapshot(dest) == {"x", "x/a.txt"}
    # into an existing destination: merged file by file, earlier files kept
    archive.extract(path, dest, {"top/sub/b.txt": "x/b.txt"}, max_uncompressed_bytes=100)
    assert snapshot(dest) == {"x", "x/a.txt", "x/b.txt"}
    assert snapshot(tmp_path) == {"ok.tar", "dest", "dest/x", "dest/x/a.txt", "dest/x/b.txt"}
    # default: every file under its own name
    archive.extract(path, tmp_path / "all", max_uncompressed_bytes=None)
    assert (tmp_path / "all/top/sub/b.txt").read_bytes() == b"beta"


def test_extract_names_an_absent_member(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "ok.zip", [("a.txt", b"a", REG)])
    with pytest.raises(io.InputError, match=r"ok\.zip: no file member\(s\) b\.txt"):
        archive.extract(path, tmp_path / "dest", {"b.txt": "b.txt"}, max_uncompressed_bytes=None)
    assert not (tmp_path / "dest").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    path.write_text("hello")
    with pytest.raises(io.InputError, match="neither a zip nor a tar"):
        archive.list_members(path)
    with pytest.raises(io.InputError, match="archive not found"):
        archive.list_members(tmp_path / "missing.zip")


def test_folder_source_lists_and_copies_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a/x.txt").write_bytes(b"x" * 10)
    (src / "link.txt").symlink_to(src / "a/x.txt")  # the user's own tree: followed
    assert [(m.name, m.size_bytes, m.kind) for m in archive.list_members(src)] == [
        ("a/x.txt", 10, "file"), ("link.txt", 10, "file")]
    archive.extract(src, tmp_path / "dest", {"link.txt": "y.txt"}, max_uncompressed_bytes=1)
    assert (tmp_path / "dest/y.txt").read_bytes() == b"x" * 10


def make_archive(fmt: str, folder: Path, members: list[tuple[str, bytes]]) -> Path:
    """A zip or tar.gz of regular files, duplicated names allowed (zipfile warns about them)."""
    if fmt == "tar":
        return make_tar(folder / "dup.tar.gz", members)
    path = folder / "dup.zip"
    named = [name for name, _ in members]
    if len(set(named)) < len(named):
        with pytest.warns(UserWarning, match="Duplicate name"):  # really stored twice
            return make_zip(path, [(name, data, REG) for name, data in members])
    return make_zip(path, [(name, data, REG) for name, data in members])


def crc_twin(data: bytes) -> bytes:
    """Other bytes of the same length and CRC-32 (first bit flipped, last 4 bytes solved for:
    the CRC is affine in the data, so this is linear algebra over GF(2))."""
    n, zero = len(data), zlib.crc32(bytes(len(data)))

    def effect(bit: int) -> int:  # CRC change caused by flipping one bit of the data
        flipped = bytearray(n)
        flipped[bit // 8] ^= 1 << bit % 8
        return zlib.crc32(bytes(flipped)) ^ zero

    basis: list[tuple[int, int]] = []  # (effect, flipped bits), distinct leading bits
    for bit in range(8 * n - 32, 8 * n):
        vec, mask = effect(bit), 1 << bit
        for b_vec, b_mask in basis:
            if vec ^ b_vec < vec:
                vec, mask = vec ^ b_vec, mask ^ b_mask
        basis = sorted([*basis, (vec, mask)], reverse=True)
    vec, mask = effect(0), 1
    for b_vec, b_mask in basis:
        if vec ^ b_vec < vec:
            vec, mask = vec ^ b_vec, mask ^ b_mask
    assert vec == 0
    return (int.from_bytes(data, "little") ^ mask).to_bytes(n, "little")


FORMATS = ["zip", "tar"]
TWIN = b"first copy of the member"
COPIES = {"same-size": (b"one", b"two"), "other-size": (b"one", b"three"),
          "same-crc": (TWIN, crc_twin(TWIN))}  # same size and CRC-32: only the bytes differ


def test_crc_twin_has_the_same_crc_and_other_bytes() -> None:
    first, second = COPIES["same-crc"]
    assert second != first and len(second) == len(first)
    assert zlib.crc32(second) == zlib.crc32(first)


@pytest.mark.parametrize("copies", COPIES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_with_different_bytes_is_refused(tmp_path: Path, fmt: str,
                                                   copies: str) -> None:
    first, second = COPIES[copies]
    path = make_archive(fmt, tmp_path, [("d/x.bin", first), ("d/y.bin", b"ok"),
                                        ("d/x.bin", second)])
    dest = tmp_path / "dest"
    for selection in (None, {"d/y.bin": "y.bin"}):  # the whole archive is checked
        with pytest.raises(io.InputError, match=r"refused, 1 conflicting member\(s\): 'd/x\.bin' "
                           r"\(2 copies with different contents\)") as error:
            archive.extract(path, dest, selection, max_uncompressed_bytes=None)
        assert str(error.value).startswith(f"{path}: ")
    assert snapshot(tmp_path) == {path.name}


@pytest.mark.parametrize("fmt", FORMATS)
def test_identical_duplicates_are_extracted_once(tmp_path: Path, fmt: str) -> None:
    data = bytes(range(256)) * 4
    path = make_archive(fmt, tmp_path, [("d/x.bin", data), ("d/y.bin", b"ok"),
                                        ("d/x.bin", data), ("./d//x.bin", data)])
    assert [m.name for m in archive.list_members(path)].count("d/x.bin") == 2
    assert archive.inventory(path, None) == ["d/x.bin", "d/y.bin"]
    dest = tmp_path / "dest"
    assert archive.extract(path, dest, max_uncompressed_bytes=None) == [dest / "d/x.bin",
                                                                        dest / "d/y.bin"]
    assert snapshot(dest) == {"d", "d/x.bin", "d/y.bin"}
    assert (dest / "d/x.bin").read_bytes() == data and (dest / "d/y.bin").read_bytes() == b"ok"


@pytest.mark.parametrize("below", ["a/b/c", "a/b/c/d"])
@pytest.mark.parametrize("order", ["file-first", "folder-first"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_file_and_file_below_it_are_refused(tmp_path: Path, fmt: str, order: str,
                                            below: str) -> None:
    members = [("a/b", b"a file"), (below, b"a file below it"), ("a/d", b"fine")]
    path = make_archive(fmt, tmp_path, members if order == "file-first" else members[::-1])
    with pytest.raises(io.InputError, match=r"refused, 1 conflicting member\(s\): file 'a/b' "
                       f"vs '{below}' " r"\(a path cannot be both a file and a folder\)") as error:
        archive.extract(path, tmp_path / "dest", {"a/d": "d"}, max_uncompressed_bytes=None)
    assert str(error.value).startswith(f"{path}: ")
    assert snapshot(tmp_path) == {path.name}


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_and_directory_entry_are_refused(tmp_path: Path, fmt: str) -> None:
    if fmt == "zip":
        path = make_zip(tmp_path / "clash.zip", [("a/b", b"a file", REG),
                                                 ("a/b/", b"", stat.S_IFDIR | 0o755)])
        folder = "a/b/"
    else:
        path = make_tar(tmp_path / "clash.tar", [("a/b", b"a file"),
                                                 tar_entry("a/b", tarfile.DIRTYPE)])
        folder = "a/b"  # tar stores directory names without the trailing slash
    assert [m.kind for m in archive.list_members(path)] == ["file", "dir"]
    with pytest.raises(io.InputError, match=f"refused, 1 conflicting member\\(s\\): file 'a/b' "
                       f"vs '{folder}' "):
        archive.extract(path, tmp_path / "dest", max_uncompressed_bytes=None)
    assert snapshot(tmp_path) == {path.name}


def test_names_differing_in_case_do_not_clash(tmp_path: Path) -> None:
    """Linux file names are case-sensitive: 'A/b' (a file) does not clash with 'a/b/c'."""
    path = make_tar(tmp_path / "case.tar", [("A/b", b"upper"), ("a/b/c", b"lower"),
                                            ("a/B", b"other")])
    archive.extract(path, tmp_path / "dest", max_uncompressed_bytes=None)
    assert (tmp_path / "dest/A/b").read_bytes() == b"upper"
    assert (tmp_path / "dest/a/b/c").read_bytes() == b"lower"


def test_extraction_targets_must_not_collide(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "ok.zip", [("a", b"a", REG), ("b", b"b", REG)])
    for selection in ({"a": "x", "b": "./x"}, {"a": "x", "b": "x/y"}):
        with pytest.raises(ValueError, match="extraction targets collide"):
            archive.extract(path, tmp_path / "dest", selection, max_uncompressed_bytes=None)
    assert snapshot(tmp_path) == {"ok.zip"}


@pytest.mark.parametrize("duplicated", ["models_reg/1_neutral.obj", "dpmap/1_neutral.png"])
def test_cli_refuses_facescape_zip_with_a_duplicated_member(tmp_path: Path,
                                                            duplicated: str) -> None:
    """A FaceScape-shaped zip (see conftest.facescape_zip) with one member stored twice, once
    with other bytes: the selected scan or a member the import would not even extract."""
    top = "facescape_trainset_001_100/1"
    members = [(f"{top}/models_reg/1_neutral.obj", OBJ_BYTES),
               (f"{top}/models_reg/1_neutral.obj.mtl", b"newmtl m\n"),
               (f"{top}/models_reg/1_neutral.jpg", b"\xff\xd8 not a real jpeg"),
               (f"{top}/dpmap/1_neutral.png", b"\x89PNG not a real png")]
    members.append((f"{top}/{duplicated}", b"other bytes"))
    (tmp_path / "sources").mkdir()
    path = make_archive("zip", tmp_path / "sources", members)
    dest = tmp_path / "work" / "D"
    dest.parent.mkdir()
    result = subprocess.run([sys.executable, "-m", "facerecon.data.facescape", "import", str(path),
                             "--dest", str(dest), "--subjects", "1", "--expressions", "1"],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {path}: refused, 1 conflicting member(s): "
                                    f"'{top}/{duplicated}' (2 copies with different contents)")
    assert snapshot(tmp_path / "work") == set()
