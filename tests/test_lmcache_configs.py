"""The LMCache config files the three study set-ups generate: parseable, the keys LMCache 0.5.2
reads, and the values each role needs (no vLLM, no LMCache needed; one test uses LMCache's own
parser where LMCache is installed)."""
from __future__ import annotations

import pytest
import yaml

from pytest_disagg.mediums import MediumRegistry
from pytest_disagg import lmcache_wire as wire
from pytest_disagg.mediums import lmcache as lm
from pytest_disagg.mediums.base import MediumContext

PD_PORTS = {"lmcache_pd_init": 7300, "lmcache_pd_alloc": 7400, "lmcache_pd_notify": 7500}


@pytest.fixture
def ctx(tmp_path):
    return MediumContext(workdir=tmp_path, device="cuda", side_channel_port=5000,
                         peer_ports={"prefill": 5000, "decode": 5001, **PD_PORTS},
                         services={"redis": "127.0.0.1:6390"})


def built(medium: str, role: str, ctx):
    """(RoleSetup, parsed YAML) of one role, the file read back as LMCache reads it."""
    setup = MediumRegistry().get(medium).role_setup(role, ctx)
    (name, text), = setup.files.items()
    assert setup.env["LMCACHE_CONFIG_FILE"] == str(ctx.workdir / name)
    return setup, yaml.safe_load(text)


@pytest.mark.parametrize("medium", ["lmcache-cpu", "lmcache-disk", "lmcache-nixl"])
def test_every_role_file_parses_with_known_keys(medium, ctx):
    for role, kv_role in (("prefill", "kv_producer"), ("decode", "kv_consumer")):
        setup, config = built(medium, role, ctx)
        assert set(config) <= set(lm.KEY_TYPES), set(config) - set(lm.KEY_TYPES)
        assert set(config.get("extra_config") or {}) <= lm.EXTRA_KEYS
        assert config["chunk_size"] == lm.CHUNK_SIZE
        assert config["save_unfull_chunk"] is True
        assert setup.kv_transfer_config == {"kv_connector": "LMCacheConnectorV1", "kv_role": kv_role}
        # Without a fixed hash seed prefill's and decode's chunk keys differ and nothing is found.
        assert setup.env["PYTHONHASHSEED"] == "0"
        assert "remote_url" not in config


def test_dis_cpu_publishes_through_the_deployments_redis(ctx):
    _, pre = built("lmcache-cpu", "prefill", ctx)
    _, dec = built("lmcache-cpu", "decode", ctx)
    for cfg in (pre, dec):
        assert cfg["remote_storage_plugins"] == ["redis"]
        assert cfg["extra_config"]["remote_storage_plugin.redis.redis_url"] == "redis://127.0.0.1:6390"
        assert cfg["extra_config"]["force_store_wait"] is True
        assert cfg["max_local_cpu_size"] > 0        # the staging buffer every remote tier needs
    assert pre["local_cpu"] is True and dec["local_cpu"] is False


def test_dis_cpu_without_redis_service_names_it(tmp_path):
    bare = MediumContext(workdir=tmp_path, device="cuda", side_channel_port=1)
    with pytest.raises(lm.LMCacheConfigError, match="redis service"):
        MediumRegistry().get("lmcache-cpu").role_setup("prefill", bare)
    with pytest.raises(lm.LMCacheConfigError, match="host:port"):
        lm.cpu_config("prefill", "localhost")


def test_dis_disk_shares_one_existing_directory_with_odirect(ctx):
    _, pre = built("lmcache-disk", "prefill", ctx)
    _, dec = built("lmcache-disk", "decode", ctx)
    base = pre["extra_config"]["remote_storage_plugin.fs.base_path"]
    assert base == dec["extra_config"]["remote_storage_plugin.fs.base_path"]
    assert base.startswith(str(ctx.workdir)) and (ctx.workdir / "lmcache-fs").is_dir()
    for cfg in (pre, dec):
        assert cfg["remote_storage_plugins"] == ["fs"]
        assert cfg["local_cpu"] is False
        extra = cfg["extra_config"]
        # O_DIRECT is silently dropped by the fs connector while save_chunk_meta is on.
        assert extra["fs_connector_use_odirect"] is True and extra["save_chunk_meta"] is False


def test_dis_gpu_receiver_binds_what_the_sender_is_told(ctx):
    pre_setup, pre = built("lmcache-nixl", "prefill", ctx)
    dec_setup, dec = built("lmcache-nixl", "decode", ctx)
    for cfg in (pre, dec):
        assert cfg["enable_pd"] is True and cfg["transfer_channel"] == "nixl"
        assert cfg["pd_buffer_device"] == "cuda" and cfg["pd_buffer_size"] == lm.PD_BUFFER_BYTES
        assert cfg["local_cpu"] is False
    assert pre["pd_role"] == "sender" and dec["pd_role"] == "receiver"
    assert pre["pd_proxy_port"] == PD_PORTS["lmcache_pd_notify"] and pre["pd_proxy_host"] == wire.HOST
    assert "pd_peer_init_port" not in pre
    # Lists: LMCache indexes them by tensor-parallel rank.
    assert dec["pd_peer_init_port"] == [PD_PORTS["lmcache_pd_init"]]
    assert dec["pd_peer_alloc_port"] == [PD_PORTS["lmcache_pd_alloc"]]
    spec = wire.disagg_spec("req-7", wire.PdPorts.from_context(ctx))
    assert spec == {"req_id": "req-7", "receiver_host": dec["pd_peer_host"],
                    "receiver_init_port": dec["pd_peer_init_port"],
                    "receiver_alloc_port": dec["pd_peer_alloc_port"]}
    assert pre_setup.env["UCX_TLS"] == dec_setup.env["UCX_TLS"]


def test_dis_gpu_transport_follows_the_environment(ctx, monkeypatch):
    monkeypatch.delenv("UCX_TLS", raising=False)
    setup, _ = built("lmcache-nixl", "decode", ctx)
    assert setup.env["UCX_TLS"] == lm.UCX_TLS and "cuda_ipc" in lm.UCX_TLS
    monkeypatch.setenv("UCX_TLS", "tcp")
    setup, _ = built("lmcache-nixl", "decode", ctx)
    assert setup.env["UCX_TLS"] == "tcp"


def test_dis_gpu_needs_its_three_ports(tmp_path):
    ctx = MediumContext(workdir=tmp_path, device="cuda", side_channel_port=1, peer_ports={"prefill": 1, "decode": 2})
    with pytest.raises(lm.LMCacheConfigError, match="lmcache_pd_init, lmcache_pd_alloc, lmcache_pd_notify"):
        MediumRegistry().get("lmcache-nixl").role_setup("decode", ctx)
    same = MediumContext(workdir=tmp_path, device="cuda", side_channel_port=1,
                         peer_ports={"lmcache_pd_init": 9, "lmcache_pd_alloc": 9, "lmcache_pd_notify": 10})
    with pytest.raises(lm.LMCacheConfigError, match="must differ"):
        wire.PdPorts.from_context(same)


def test_colocated_role_is_refused():
    with pytest.raises(lm.LMCacheConfigError, match="colocated"):
        lm.disk_config("colocated", lm.Path("/x"))


@pytest.mark.parametrize("config, message", [
    ({"chunk_size": 256, "local_device": "cpu"}, "local_device"),          # a pre-v1 key
    ({"chunk_size": "256"}, "chunk_size"),
    ({"local_cpu": 1}, "local_cpu"),
    ({"chunk_size": True}, "chunk_size"),
    ({"pd_peer_init_port": 7300}, "pd_peer_init_port"),                     # must be a list
    ({"pd_peer_init_port": ["7300"]}, "list of ints"),
    ({"extra_config": {"use_odirect": True}}, "use_odirect"),              # the local-disk backend's key
])
def test_validate_names_the_bad_key(config, message):
    with pytest.raises(lm.LMCacheConfigError, match=message):
        lm.validate(config, where="x.yaml")


@pytest.mark.parametrize("medium", ["lmcache-cpu", "lmcache-disk", "lmcache-nixl"])
def test_lmcache_itself_reads_the_files(medium, ctx):
    """Where LMCache is installed (the lent GPU), its own parser must take every key as written."""
    config_mod = pytest.importorskip(
        "lmcache.v1.config", reason="LMCache is not installed here (it needs CUDA; the lent GPU has 0.5.2)")
    assert set(lm.KEY_TYPES) <= set(config_mod._CONFIG_DEFINITIONS)
    for role in ("prefill", "decode"):
        setup = MediumRegistry().get(medium).role_setup(role, ctx)
        (name, text), = setup.files.items()
        (ctx.workdir / name).write_text(text)
        parsed = config_mod.LMCacheEngineConfig.from_file(str(ctx.workdir / name))
        parsed.validate()
        assert parsed._user_set_keys == set(yaml.safe_load(text))   # nothing ignored as unknown
        for key, value in yaml.safe_load(text).items():
            assert getattr(parsed, key) == value, key


def test_pd_notification_is_read_back():
    msgspec = pytest.importorskip("msgspec")

    class PDMsgBase(msgspec.Struct, tag=True):   # as lmcache/v1/storage_backend/pd_backend*.py define it
        pass

    class ProxyNotif(PDMsgBase):
        req_id: str

    assert wire.notified_request(msgspec.msgpack.encode(ProxyNotif(req_id="req-7"))) == "req-7"
    with pytest.raises(lm.LMCacheConfigError, match="not an LMCache ProxyNotif"):
        wire.notified_request(msgspec.msgpack.encode({"type": "AllocRequest", "keys": []}))
    with pytest.raises(lm.LMCacheConfigError, match="not msgpack"):
        wire.notified_request(b"\xc1")


def test_pd_notification_from_lmcache_itself():
    pd = pytest.importorskip("lmcache.v1.storage_backend.pd_backend_async",
                             reason="LMCache is not installed here (it needs CUDA; the lent GPU has 0.5.2)")
    import msgspec

    assert wire.notified_request(msgspec.msgpack.encode(pd.ProxyNotif(req_id="r1"))) == "r1"


def test_odirect_is_probed_where_the_files_go(ctx, monkeypatch):
    assert lm.odirect_problem(ctx.workdir) is None        # this machine's file system takes O_DIRECT
    assert not list(ctx.workdir.iterdir())                  # the probe leaves nothing behind
    real_open = lm.os.open

    def no_direct(path, flags, *args):
        if flags & lm.os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(lm.os, "open", no_direct)
    with pytest.raises(lm.LMCacheConfigError, match=r"O_DIRECT I/O fails in .*lmcache-fs.*Invalid argument"):
        MediumRegistry().get("lmcache-disk").role_setup("prefill", ctx)
