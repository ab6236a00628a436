"""embedding_operator: turns EmbeddingJobs into KubeRay RayJobs and reports their status.

Every name of the API it serves comes from the contract, ``embedding_job.api``.
"""
