"""A digest-keyed cache of layer indexes, so a layer already indexed is never fetched again.

A LayerIndex depends only on the layer's bytes and on what was asked of them (the CaptureSpec
and AnalyzeSpec), so it can be stored under the layer's digest and a key of what was asked.
Three parts: codec (analyzer results as tagged JSON), entry (the key and the file format),
store (the directory: atomic writes, trust checks, info and prune).  The names the rest of
ociboot imports are re-exported here.
"""

from .codec import AnalysisCodec
from .entry import FORMAT_VERSION, MAX_INFLATION, CorruptEntry, decode_index, encode_index, spec_key
from .store import CacheInfo, LayerCache, PruneResult, default_cache_dir, parse_size

__all__ = [
    "FORMAT_VERSION",
    "MAX_INFLATION",
    "AnalysisCodec",
    "CacheInfo",
    "CorruptEntry",
    "LayerCache",
    "PruneResult",
    "decode_index",
    "default_cache_dir",
    "encode_index",
    "parse_size",
    "spec_key",
]
