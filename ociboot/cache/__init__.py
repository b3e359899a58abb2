"""A digest-keyed cache of layer indexes, so a layer already indexed is never fetched again.

A LayerIndex depends only on the layer's bytes and on what was asked of them (the CaptureSpec
and AnalyzeSpec), so it can be stored under the layer's digest and a key of what was asked.
Three parts: codec (analyzer results as tagged JSON), entry (the key and the file format),
store (the directory: atomic writes, trust checks, info and prune); and verdict: a check's
reports for a whole reference, stored beside the layer indexes so that a re-check of an
unchanged image reads no layer at all.  The names the rest of
ociboot imports are re-exported here.
"""

from .codec import AnalysisCodec
from .entry import FORMAT_VERSION, MAX_INFLATION, CorruptEntry, decode_index, encode_index, spec_key
from .store import CacheInfo, LayerCache, PruneResult, default_cache_dir, parse_size
from .verdict import MAX_VERDICT_BYTES, Verdict, build_id, code_fingerprint, storable, verdict_key

__all__ = [
    "FORMAT_VERSION",
    "MAX_INFLATION",
    "MAX_VERDICT_BYTES",
    "AnalysisCodec",
    "CacheInfo",
    "CorruptEntry",
    "LayerCache",
    "PruneResult",
    "Verdict",
    "build_id",
    "code_fingerprint",
    "decode_index",
    "default_cache_dir",
    "encode_index",
    "parse_size",
    "spec_key",
    "storable",
    "verdict_key",
]
