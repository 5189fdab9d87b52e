"""HDF5 chunk shards: schema, writer, reader, manifest (``format``) and the
validator (``validate``, also the ``grappa-validate`` command)."""
from grappa.shards.format import SCHEMA, load_manifest, read_shard, write_shard

__all__ = ["SCHEMA", "load_manifest", "read_shard", "write_shard"]
