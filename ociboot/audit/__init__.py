"""`ociboot audit`: every tag of a registry namespace judged at the cost of its unique images.

    targets   what to audit: docker://HOST[/PREFIX] through the registry's catalog and tag lists
              (Link pagination), or a --from FILE of references; --repo/--tag/--newest filters
    record    one result per tag (the --format jsonl line, and what --resume reads back)
    executor  where the per-image work runs: threads here, or a Dask cluster (audit.dask)
    run       the audit itself: tags resolved to manifest digests, each digest judged once
    html      the --html report: one self-contained page that fetches nothing

Each manifest digest is checked once however many tags name it, and the layer cache the audit
runs with makes each layer fetched and indexed once for the whole audit.
"""
