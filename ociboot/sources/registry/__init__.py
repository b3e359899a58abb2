"""docker:// — a registry, read (and written) over ociboot's own HTTP transport.

    client     RegistryClient: the run's shared state (tokens, TLS settings, connection pools)
    transport  metered sockets and sessions; the only importer of requests and urllib3
    token      401 answered: bearer tokens per scope, Basic, where credentials may go
    endpoint   one repository as one image sees it: budget, auth, bounded retries
    source     RegistrySource: raw manifests and blobs (an ImageSource)
    blob       a blob stream that resumes with Range
    push       RegistryTarget: blob and manifest upload, cross-repository mount

Why oras-py does none of this: docs/architecture.md, "Registry access and oras-py".  Nothing is
imported here, so that `client` (which pipeline.Options holds) loads no HTTP code.
"""
