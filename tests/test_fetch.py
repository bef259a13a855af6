"Downloading into the cache from a local HTTP server: good, corrupted, missing, interrupted, offline."
import socket
import pytest
from ephys2tx.data import ChecksumError, DataError, DATASETS, fetch, sha256sum

DS = 'human_leedalley2023'
SMALL = ['DataS1_Donor_table.csv', 'LeeDalley_ephys_fx.csv']


@pytest.fixture(autouse=True)
def no_mirror_env(monkeypatch):
    "These tests exercise the download path: no mirror may be configured."
    monkeypatch.delenv('EPHYS2TX_DATA', raising=False)


def test_good_download_verifies_and_leaves_no_partial(http_mirror, tmp_path):
    base, root, srv = http_mirror
    cache = tmp_path / 'cache'
    out = fetch(DS, cache=cache, base_url=base, files=SMALL, progress=False)
    assert out == cache / DS
    for name in SMALL:
        assert sha256sum(out / name) == DATASETS[DS].file(name).sha256
    assert not list(out.glob('*.part'))
    # a second fetch uses the cache: no new request reaches the server
    n = len(srv.requests)
    fetch(DS, cache=cache, base_url=base, files=SMALL, progress=False)
    assert len(srv.requests) == n


def test_corrupted_file_is_refused(http_mirror, tmp_path):
    base, root, srv = http_mirror
    f = root / DS / 'DataS1_Donor_table.csv'
    f.write_bytes(f.read_bytes().replace(b'epilepsy', b'epilepsi', 1))
    cache = tmp_path / 'cache'
    with pytest.raises(ChecksumError, match='DataS1_Donor_table.csv.*SHA-256 does not match'):
        fetch(DS, cache=cache, base_url=base, files=['DataS1_Donor_table.csv'], progress=False)
    assert not (cache / DS / 'DataS1_Donor_table.csv').exists()
    assert not list((cache / DS).glob('*.part'))


def test_missing_file_404(http_mirror, tmp_path):
    base, root, srv = http_mirror
    (root / DS / 'LeeDalley_ephys_fx.csv').unlink()
    with pytest.raises(DataError, match='LeeDalley_ephys_fx.csv: download of .* failed with HTTP 404'):
        fetch(DS, cache=tmp_path / 'c', base_url=base, files=['LeeDalley_ephys_fx.csv'], progress=False)


def test_interrupted_transfer_keeps_partial_then_resumes(http_mirror, tmp_path):
    base, root, srv = http_mirror
    name = 'LeeDalley_ephys_fx.csv'
    srv.interrupt[f'/{DS}/{name}'] = 1
    cache = tmp_path / 'cache'
    with pytest.raises(DataError, match='interrupted'):
        fetch(DS, cache=cache, base_url=base, files=[name], progress=False, retries=0)
    part = cache / DS / (name + '.part')
    size = (root / DS / name).stat().st_size
    assert part.exists() and 0 < part.stat().st_size < size
    got = part.stat().st_size
    fetch(DS, cache=cache, base_url=base, files=[name], progress=False, retries=0)
    assert srv.requests[-1] == (f'/{DS}/{name}', f'bytes={got}-')  # resumed, not restarted
    assert sha256sum(cache / DS / name) == DATASETS[DS].file(name).sha256
    assert not part.exists()


def test_interrupted_transfer_retries_automatically(http_mirror, tmp_path):
    base, root, srv = http_mirror
    name = 'LeeDalley_ephys_fx.csv'
    srv.interrupt[f'/{DS}/{name}'] = 1
    out = fetch(DS, cache=tmp_path / 'c', base_url=base, files=[name], progress=False, retries=2)
    assert sha256sum(out / name) == DATASETS[DS].file(name).sha256
    assert [r for r in srv.requests if r[0].endswith(name)][-1][1] is not None


def test_server_without_range_support_restarts(http_mirror, tmp_path):
    base, root, srv = http_mirror
    name = 'LeeDalley_ephys_fx.csv'
    srv.interrupt[f'/{DS}/{name}'] = 1
    srv.honour_range = False
    out = fetch(DS, cache=tmp_path / 'c', base_url=base, files=[name], progress=False, retries=1)
    assert sha256sum(out / name) == DATASETS[DS].file(name).sha256


def test_offline_error_names_both_remedies(tmp_path):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()  # nothing listens here
    with pytest.raises(DataError) as e:
        fetch(DS, cache=tmp_path / 'c', base_url=f'http://127.0.0.1:{port}', files=SMALL[:1], progress=False)
    msg = str(e.value)
    assert 'EPHYS2TX_DATA' in msg and '--data-dir' in msg and 'DataS1_Donor_table.csv' in msg


def test_mirror_checksums_are_verified(mirror, tmp_path):
    import shutil
    m = tmp_path / 'm'; shutil.copytree(mirror / DS, m / DS)
    f = m / DS / 'DataS1_Donor_table.csv'; f.chmod(0o644)
    assert fetch(DS, data_dir=m, files=['DataS1_Donor_table.csv']) == m / DS
    f.write_text(f.read_text() + '\n')
    with pytest.raises(ChecksumError, match='DataS1_Donor_table.csv: SHA-256 mismatch'):
        fetch(DS, data_dir=m, files=['DataS1_Donor_table.csv'])
