"""Downloads against a real HTTP server on 127.0.0.1 serving archives made from the benchmark images."""
import http.server
import io
import json
import shutil
import tarfile
import threading
import zipfile

import pytest

from bsr import BsrError
from bsr.download import download_dataset, sha256_file


class Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.truncate:
            self.wfile.write(body[start:start + (len(body) - start) // 2])  # then the connection closes
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def set5_zip(data, extra=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted((data / "Set5" / "HR").iterdir()):
            z.write(path, f"benchmark/Set5/HR/{path.name}")
        if extra:
            extra(z)
    return buffer.getvalue()


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


def test_download_verifies_and_records_the_checksum(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    assert fetch(tmp_path, f"{server}/set5.zip") == 5
    lock = json.loads((tmp_path / "datasets.lock").read_text())
    assert lock["Set5"]["sha256"] == sha256_file(tmp_path / "cache" / "set5.zip")
    assert sorted(p.name for p in (tmp_path / "hr" / "Set5").iterdir()) == sorted(
        p.name for p in (shared_data / "Set5" / "HR").iterdir())


def test_checksum_mismatch_against_config_fails_cleanly(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    with pytest.raises(BsrError, match=r"sha256 [0-9a-f]{64} does not match datasets.Set5.sha256 0{64}"):
        fetch(tmp_path, f"{server}/set5.zip", sha256="0" * 64)
    assert no_dataset(tmp_path)
    assert not (tmp_path / "cache" / "set5.zip").exists()  # never reused


def test_checksum_change_against_lock_fails_cleanly(server, shared_data, tmp_path):
    Handler.files["/moving.zip"] = set5_zip(shared_data)
    fetch(tmp_path, f"{server}/moving.zip")
    Handler.files["/moving.zip"] = set5_zip(shared_data, lambda z: z.writestr("README", "changed"))
    (tmp_path / "cache" / "moving.zip").unlink()
    shutil.rmtree(tmp_path / "hr")
    with pytest.raises(BsrError, match="differs from .* recorded in .*datasets.lock for Set5"):
        fetch(tmp_path, f"{server}/moving.zip")
    assert no_dataset(tmp_path)


def test_truncated_transfer_fails_cleanly_and_resumes(server, shared_data, tmp_path):
    Handler.files["/cut.zip"] = set5_zip(shared_data)
    Handler.truncate.add("/cut.zip")
    with pytest.raises(BsrError, match="truncated transfer|broken off"):
        fetch(tmp_path, f"{server}/cut.zip")
    assert no_dataset(tmp_path) and not (tmp_path / "cache" / "cut.zip").exists()
    Handler.truncate.discard("/cut.zip")
    assert fetch(tmp_path, f"{server}/cut.zip") == 5  # resumes from the .part file


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


def test_wrong_image_count_fails_cleanly(server, shared_data, tmp_path):
    Handler.files["/set5.zip"] = set5_zip(shared_data)
    with pytest.raises(BsrError, match="found 5 images under 'benchmark/Set5/HR', datasets.Set5.images expects 6"):
        fetch(tmp_path, f"{server}/set5.zip", images=6)
    assert no_dataset(tmp_path)
