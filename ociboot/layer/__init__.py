"""Layers: what to keep of one (select), its tar walked (tarwalk) on a read-ahead thread
(readahead), the verified index of a blob (index).

The names the rest of ociboot imports are re-exported here, so `ociboot.layer` stays the
import path; limits are read where they live (tarwalk.MAX_INDEX_BYTES, tarwalk.MAX_META_BYTES).
"""

from .index import LayerIndex, index_layer
from .readahead import ReadAhead
from .select import NOT_WANTED, AnalysisFailed, Analyzer, AnalyzeSpec, CaptureSpec, OverBudget
from .tarwalk import BLOCK, MemberReader, TarListing, normalize_path, read_tar

__all__ = [
    "BLOCK",
    "NOT_WANTED",
    "AnalysisFailed",
    "AnalyzeSpec",
    "Analyzer",
    "CaptureSpec",
    "LayerIndex",
    "MemberReader",
    "OverBudget",
    "ReadAhead",
    "TarListing",
    "index_layer",
    "normalize_path",
    "read_tar",
]
