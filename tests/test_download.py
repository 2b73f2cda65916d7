"""Downloads against a real HTTP server on 127.0.0.1 serving archives made from the benchmark images."""
import hashlib
import http.server
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
import warnings
import zipfile

import pytest
import yaml
from PIL import Image

from bsr import BsrError, download, stages
from bsr.config import check_pipeline
from bsr.download import Member, cache_path, copy_member, download_dataset, sha256_file, sha256_folder
from tests.conftest import command_env, project_copy, tiny_pipeline_config


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `files`, honouring Range; `modes` makes a path misbehave as real servers do:
    - truncate: sends half of what it announces, then closes;
    - 416: answers any Range with 416;
    - from-zero: answers a Range with a 206 from byte 0;
    - no-length: ignores Range, sends no Content-Length, and closes after half the file;
    - trickle: sends its first 40 bytes one every 0.1 s."""
    files: dict[str, bytes] = {}
    modes: dict[str, str] = {}

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        mode = self.modes.get(self.path, "")
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        if start and mode == "416":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        partial = bool(start) and mode != "no-length"
        first = start if partial and mode != "from-zero" else 0
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", f"bytes {first}-{len(body) - 1}/{len(body)}")
        if mode != "no-length":
            self.send_header("Content-Length", str(len(body) - first))
        self.end_headers()
        data = body[first:]
        try:
            if mode in ("truncate", "no-length"):
                self.wfile.write(data[:len(data) // 2])  # then the connection closes
                self.close_connection = True
                return
            if mode == "trickle":
                for i in range(40):
                    self.wfile.write(data[i:i + 1])
                    time.sleep(0.1)
                data = data[40:]
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def bench_zip(data, name="Set5", extra=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted((data / name / "HR").iterdir()):
            z.write(path, f"benchmark/{name}/HR/{path.name}")
        if extra:
            extra(z)
    return buffer.getvalue()


def set5_zip(data, extra=None) -> bytes:
    return bench_zip(data, "Set5", extra)


def set5_tar(data, extra) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for path in sorted((data / "Set5" / "HR").iterdir()):
            t.add(path, f"benchmark/Set5/HR/{path.name}")
        extra(t)
    return buffer.getvalue()


def fetch(tmp_path, url, **spec):
    spec = {"source": url, "subdir": "benchmark/Set5/HR", "images": 5, **spec}
    return download_dataset("Set5", spec, tmp_path / "hr" / "Set5", tmp_path / "datasets.lock", tmp_path / "cache")


def no_dataset(tmp_path):
    """No dataset folder, and no temporary one left beside where it would be."""
    return not (tmp_path / "hr").exists() or not any((tmp_path / "hr").iterdir())


def nothing_pinned(tmp_path):
    lock = tmp_path / "datasets.lock"
    return not lock.exists() or "Set5" not in json.loads(lock.read_text())


def pinned(tmp_path, name="Set5"):
    return json.loads((tmp_path / "datasets.lock").read_text())[name]["sha256"]


def bmp_bytes(path) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as im:
        im.save(buffer, "BMP")
    return buffer.getvalue()


def test_no_network_says_where_to_put_the_file_to_work_offline(shared_data, tmp_path):
    from bsr.download import cache_path

    url = "http://127.0.0.1:9/benchmark.tar.gz"  # the discard port: nothing listens there
    with pytest.raises(BsrError, match="cannot connect") as err:
        fetch(tmp_path, url)
    assert f"put the file there at {cache_path(url, tmp_path / 'cache')}" in str(err.value)
    assert "file://" in str(err.value) and no_dataset(tmp_path)


def test_download_verifies_and_records_the_checksum(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    assert fetch(tmp_path, f"{server}/set5.zip") == 5
    assert pinned(tmp_path) == sha256_file(cache_path(f"{server}/set5.zip", tmp_path / "cache"))
    assert sorted(p.name for p in (tmp_path / "hr" / "Set5").iterdir() if p.suffix == ".png") == sorted(
        p.name for p in (shared_data / "Set5" / "HR").iterdir())


def test_checksum_mismatch_against_config_fails_cleanly(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    with pytest.raises(BsrError, match=r"sha256 [0-9a-f]{64} does not match datasets.Set5.sha256 0{64}"):
        fetch(tmp_path, f"{server}/set5.zip", sha256="0" * 64)
    assert no_dataset(tmp_path)
    assert not cache_path(f"{server}/set5.zip", tmp_path / "cache").exists()  # never reused


def test_checksum_change_against_lock_fails_cleanly(server, shared_data, tmp_path):
    Handler.files["/moving.zip"] = set5_zip(shared_data)
    fetch(tmp_path, f"{server}/moving.zip")
    Handler.files["/moving.zip"] = set5_zip(shared_data, lambda z: z.writestr("README", "changed"))
    cache_path(f"{server}/moving.zip", tmp_path / "cache").unlink()
    shutil.rmtree(tmp_path / "hr")
    with pytest.raises(BsrError, match="differs from .* recorded in .*datasets.lock for Set5"):
        fetch(tmp_path, f"{server}/moving.zip")
    assert no_dataset(tmp_path)


def test_truncated_transfer_fails_cleanly_and_resumes(server, shared_data, tmp_path):
    Handler.files["/cut.zip"] = set5_zip(shared_data)
    Handler.modes["/cut.zip"] = "truncate"
    with pytest.raises(BsrError, match="truncated transfer|broken off"):
        fetch(tmp_path, f"{server}/cut.zip")
    assert no_dataset(tmp_path) and not cache_path(f"{server}/cut.zip", tmp_path / "cache").exists()
    Handler.modes.pop("/cut.zip")
    assert fetch(tmp_path, f"{server}/cut.zip") == 5  # resumes from the .part file


def test_two_urls_with_one_file_name_do_not_share_a_cache_file(server, shared_data, tmp_path):
    Handler.files["/a/data.zip"] = bench_zip(shared_data, "Set5")
    Handler.files["/b/data.zip"] = bench_zip(shared_data, "Set14")
    assert fetch(tmp_path, f"{server}/a/data.zip") == 5
    spec = {"source": f"{server}/b/data.zip", "subdir": "benchmark/Set14/HR", "images": 14}
    assert download_dataset("Set14", spec, tmp_path / "hr" / "Set14", tmp_path / "datasets.lock",
                            tmp_path / "cache") == 14
    a, b = (cache_path(f"{server}/{x}/data.zip", tmp_path / "cache") for x in "ab")
    assert a != b and a.name.endswith("-data.zip") and b.name.endswith("-data.zip")
    assert pinned(tmp_path, "Set14") == sha256_file(b) == hashlib.sha256(Handler.files["/b/data.zip"]).hexdigest()


def test_a_login_page_is_not_pinned_and_the_real_file_then_downloads(server, shared_data, tmp_path):
    Handler.files["/login.zip"] = b"<html><body><form>Please log in</form></body></html>"
    with pytest.raises(BsrError, match=r"login\.zip: not a readable zip or tar archive"):
        fetch(tmp_path, f"{server}/login.zip")
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)
    assert not cache_path(f"{server}/login.zip", tmp_path / "cache").exists()
    Handler.files["/login.zip"] = set5_zip(shared_data)
    assert fetch(tmp_path, f"{server}/login.zip") == 5
    assert pinned(tmp_path) == hashlib.sha256(Handler.files["/login.zip"]).hexdigest()


@pytest.mark.parametrize("mode,said", [
    ("from-zero", r"the server answered a resume from byte \d+ of \d+ with Content-Range 'bytes 0-\d+/\d+'; "
                  r"starting over"),
    ("416", r"the server refused to resume from byte \d+ \(HTTP 416\); starting over"),
])
def test_a_resume_the_server_does_not_continue_starts_over(server, shared_data, tmp_path, capsys, mode, said):
    """A 206 from byte 0 must not be appended to the half file; a 416 is not a sign that the file is complete."""
    path = f"/resume-{mode}.zip"
    body = Handler.files[path] = set5_zip(shared_data)
    Handler.modes[path] = "truncate"
    with pytest.raises(BsrError, match="truncated transfer"):
        fetch(tmp_path, f"{server}{path}")
    Handler.modes[path] = mode
    assert fetch(tmp_path, f"{server}{path}") == 5
    assert pinned(tmp_path) == hashlib.sha256(body).hexdigest()
    assert re.search(said, capsys.readouterr().err)


def test_a_transfer_without_length_is_held_to_the_length_announced_before(server, shared_data, tmp_path):
    body = Handler.files["/nolength.zip"] = set5_zip(shared_data)
    Handler.modes["/nolength.zip"] = "truncate"
    with pytest.raises(BsrError, match="truncated transfer"):
        fetch(tmp_path, f"{server}/nolength.zip")
    Handler.modes["/nolength.zip"] = "no-length"
    with pytest.raises(BsrError, match=rf"nolength\.zip: truncated transfer, got {len(body) // 2} of {len(body)} "):
        fetch(tmp_path, f"{server}/nolength.zip")
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)
    assert not cache_path(f"{server}/nolength.zip", tmp_path / "cache").exists()
    Handler.modes.pop("/nolength.zip")
    assert fetch(tmp_path, f"{server}/nolength.zip") == 5
    assert pinned(tmp_path) == hashlib.sha256(body).hexdigest()


def test_a_trickling_server_stalls_out(server, shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "STALL_WINDOW", 0.5)
    Handler.files["/slow.zip"] = set5_zip(shared_data)
    Handler.modes["/slow.zip"] = "trickle"
    start = time.monotonic()
    with pytest.raises(BsrError, match=r"slow\.zip: stalled at byte \d+, \d+ bytes in the last 0\.\d+ s \(under "
                                       r"1024 bytes/s\); rerun to resume"):
        fetch(tmp_path, f"{server}/slow.zip")
    assert time.monotonic() - start < 3  # the trickle alone lasts 4 s
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def test_wrong_image_count_fails_cleanly_and_pins_nothing(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    with pytest.raises(BsrError, match="found 5 images under 'benchmark/Set5/HR', datasets.Set5.images expects 6"):
        fetch(tmp_path, f"{server}/set5.zip", images=6)
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def test_archive_with_parent_entry_is_refused(server, shared_data, tmp_path):
    Handler.files["/evil.zip"] = set5_zip(shared_data, lambda z: z.writestr("benchmark/Set5/HR/../../../x.png", "x"))
    with pytest.raises(BsrError, match=r"refused to extract entry '.*\.\./x\.png': a '\.\.' component"):
        fetch(tmp_path, f"{server}/evil.zip")
    assert no_dataset(tmp_path) and not (tmp_path / "x.png").exists()


def test_archive_with_symlink_entry_is_refused(server, shared_data, tmp_path):
    def add_link(t):
        link = tarfile.TarInfo("benchmark/Set5/HR/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)

    Handler.files["/link.tar.gz"] = set5_tar(shared_data, add_link)
    with pytest.raises(BsrError, match="refused to extract entry 'benchmark/Set5/HR/passwd.png': a link"):
        fetch(tmp_path, f"{server}/link.tar.gz")
    assert no_dataset(tmp_path)


def test_archive_past_max_bytes_is_refused_before_extraction(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    with pytest.raises(BsrError, match=r"the 5 entries under 'benchmark/Set5/HR' declare \d+ bytes, more than "
                                       r"datasets.Set5.max_bytes \(100000\)"):
        fetch(tmp_path, f"{server}/set5.zip", max_bytes=100_000)
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_bomb_is_refused_before_extraction(server, tmp_path, kind):
    zeros = bytes(16 << 20)
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("benchmark/Set5/HR/zeros.png", zeros)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as t:
            info = tarfile.TarInfo("benchmark/Set5/HR/zeros.png")
            info.size = len(zeros)
            t.addfile(info, io.BytesIO(zeros))
    Handler.files[f"/bomb.{kind}"] = buffer.getvalue()
    with pytest.raises(BsrError, match=rf"bomb\.{kind}: refused, entry 'benchmark/Set5/HR/zeros\.png' would expand "
                                       rf"\d+ bytes to {16 << 20}, more than 200:1"):
        fetch(tmp_path, f"{server}/bomb.{kind}", images=1)
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def declare_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with `name`'s uncompressed size in its local and central headers replaced by `size`."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        struct.pack_into("<I", out, z.getinfo(name).header_offset + 22, size)
    at = out.find(b"PK\x01\x02")
    while out[at + 46:at + 46 + len(name)] != name.encode():
        at = out.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", out, at + 24, size)
    return bytes(out)


def test_zip_entry_larger_than_its_header_says_is_refused(server, shared_data, tmp_path):
    name = "benchmark/Set5/HR/zeros.png"
    big = set5_zip(shared_data, lambda z: z.writestr(zipfile.ZipInfo(name), bytes(8 << 20), zipfile.ZIP_DEFLATED))
    Handler.files["/liar.zip"] = declare_size(big, name, 1000)
    with pytest.raises(BsrError, match=rf"liar\.zip: not a readable zip or tar archive \(.*{name}"):
        fetch(tmp_path, f"{server}/liar.zip", images=6)
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def test_extraction_counts_the_bytes_it_writes(tmp_path):
    member = Member("benchmark/a.png", False, False, False, 5, 5, None)
    with pytest.raises(BsrError, match=r"x\.tar: refused, entry 'benchmark/a\.png' holds more than the 5 bytes its "
                                       r"header declares"):
        copy_member(tmp_path / "x.tar", member, io.BytesIO(b"0123456789"), tmp_path)


def test_archive_with_a_duplicate_name_is_refused(server, shared_data, tmp_path):
    def add_twin(z):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
            z.write(shared_data / "Set5" / "HR" / "bird.png", "benchmark/Set5/HR/baby.png")

    Handler.files["/twin.zip"] = set5_zip(shared_data, add_twin)
    with pytest.raises(BsrError, match=r"twin\.zip: refused, entry 'benchmark/Set5/HR/baby\.png' appears twice"):
        fetch(tmp_path, f"{server}/twin.zip")
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def test_archive_images_sharing_a_stem_are_refused(server, shared_data, tmp_path):
    bmp = bmp_bytes(shared_data / "Set5" / "HR" / "baby.png")
    Handler.files["/stems.zip"] = set5_zip(shared_data, lambda z: z.writestr("benchmark/Set5/HR/baby.bmp", bmp))
    with pytest.raises(BsrError, match=r"stems\.zip: benchmark/Set5/HR: baby\.\w+ and baby\.\w+ share the stem 'baby'"):
        fetch(tmp_path, f"{server}/stems.zip", images=6)
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def test_folder_images_sharing_a_stem_are_refused(shared_data, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(shared_data / "Set5" / "HR", src)
    (src / "baby.bmp").write_bytes(bmp_bytes(src / "baby.png"))
    with pytest.raises(BsrError, match=r"src: baby\.bmp and baby\.png share the stem 'baby'"):
        fetch(tmp_path, src.as_uri(), subdir="", images=6)
    assert no_dataset(tmp_path) and nothing_pinned(tmp_path)


def test_folder_subdir_files_are_checked_where_they_are_copied_from(shared_data, tmp_path):
    names = sorted(p.name for p in (shared_data / "Set5" / "HR").iterdir())
    src = tmp_path / "src"
    shutil.copytree(shared_data / "Set5" / "HR", src)  # good copies at the top...
    shutil.copytree(shared_data / "Set5" / "HR", src / "HR")
    shutil.copyfile(src / "bird.png", src / "HR" / "baby.png")  # ...and a swapped image where the copy reads
    good = sha256_folder(shared_data / "Set5" / "HR", names)
    with pytest.raises(BsrError, match=rf"does not match datasets.Set5.sha256 {good}"):
        fetch(tmp_path, src.as_uri(), subdir="HR", files=names, sha256=good)
    assert no_dataset(tmp_path)
    shutil.copyfile(shared_data / "Set5" / "HR" / "baby.png", src / "HR" / "baby.png")
    assert fetch(tmp_path, src.as_uri(), subdir="HR", files=names, sha256=good) == 5


@pytest.mark.parametrize("files,message", [
    (["baby.png", "baby.png"], "baby.png listed more than once"),
    (["/etc/passwd"], "'/etc/passwd' must be a path inside the source folder"),
    (["../HR/baby.png"], "'../HR/baby.png' must be a path inside the source folder"),
])
def test_a_file_list_stays_inside_its_folder_and_names_each_file_once(shared_data, tmp_path, files, message):
    with pytest.raises(BsrError, match=re.escape(f"datasets.Set5.files: {message}")):
        fetch(tmp_path, (shared_data / "Set5").as_uri(), subdir="HR", files=files)
    assert no_dataset(tmp_path)


def manual(tmp_path, name="Manga109", **spec):
    folder = tmp_path / "data" / "manual" / name
    spec = {"source": f"manual://{folder}", "images": 109, **spec}
    return folder, lambda: download_dataset(name, spec, tmp_path / "hr" / name, tmp_path / "datasets.lock",
                                            tmp_path / "cache")


def test_manual_source_says_what_to_put_where(shared_data, tmp_path):
    folder, run = manual(tmp_path)
    with pytest.raises(BsrError, match=rf"Manga109: the source is manual, so nothing is downloaded: put the 109 HR "
                                       rf"images \(PNG or BMP\) directly in {folder}/ \(it does not exist\)\. "
                                       rf"Manga109 is distributed by its authors, on request and for academic use "
                                       rf"only, at http://www\.manga109\.org/en/"):
        run()
    shutil.copytree(shared_data / "Set5" / "HR", folder)
    with pytest.raises(BsrError, match=rf"put the 109 HR images \(PNG or BMP\) directly in {folder}/ \(it holds 5\)"):
        run()
    assert no_dataset(tmp_path) and not (tmp_path / "datasets.lock").exists()


def test_manual_source_checks_the_placed_images_and_their_digest(shared_data, tmp_path, capsys):
    folder, run = manual(tmp_path, "Set5", images=5)
    shutil.copytree(shared_data / "Set5" / "HR", folder)
    assert run() == 5
    assert "nothing is downloaded: checking the images placed in" in capsys.readouterr().err
    assert pinned(tmp_path) == sha256_folder(folder, sorted(p.name for p in folder.iterdir()))
    shutil.copyfile(folder / "bird.png", folder / "baby.png")
    shutil.rmtree(tmp_path / "hr")
    with pytest.raises(BsrError, match="differs from .* recorded in .*datasets.lock for Set5"):
        run()
    assert no_dataset(tmp_path)


def test_download_args_for_manual_sources_and_max_bytes():
    cfg = {"data_dir": "data", "datasets": {"Manga109": {"source": "manual", "images": 109, "max_bytes": 10}}}
    assert stages.download_args(cfg, "Manga109") == \
        ["--name", "Manga109", "--source", "manual://data/manual/Manga109", "--images", "109", "--max-bytes", "10"]


def test_config_schema_takes_manual_sources_and_max_bytes(shared_data):
    cfg = tiny_pipeline_config(shared_data)
    cfg["datasets"]["Set5"] = {"source": "manual", "images": 5, "max_bytes": 1 << 30}
    check_pipeline(cfg)
    cfg["datasets"]["Set5"]["source"] = "manually"
    with pytest.raises(BsrError, match="datasets.Set5.source"):
        check_pipeline(cfg)


def test_dry_run_says_up_front_that_a_manual_dataset_is_missing(shared_data, tmp_path):
    project = project_copy(tmp_path / "project")
    cfg = tiny_pipeline_config(shared_data)
    cfg["datasets"]["Set5"] = {"source": "manual", "images": 5}
    (project / "manual.yaml").write_text(yaml.safe_dump(cfg))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--cores", "1", "-p", "--configfile",
                             "manual.yaml"], cwd=project, capture_output=True, text=True, env=command_env())
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "WARNING: Set5: the source is manual, so nothing is downloaded: put the 5 HR images (PNG or BMP) " \
           "directly in data/tiny/manual/Set5/ (it does not exist)." in out
    assert "bsr download --name Set5 --source manual://data/tiny/manual/Set5 --images 5" in out
