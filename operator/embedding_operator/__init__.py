"""embedding_operator: turns EmbeddingJobs into KubeRay RayJobs and reports their status."""

GROUP = "embedding.dev"
VERSION = "v1alpha1"
KIND = "EmbeddingJob"
PLURAL = "embeddingjobs"
SHORT_NAME = "ej"
