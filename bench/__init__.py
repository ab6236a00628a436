"""Throughput benchmark: the original component's computation against this job's data path,
embedder and full pipeline, the pipeline's ceiling in every input mode, what users write instead
(the peers) and the job's start-up, on generated, reproducible image sets.

``python -m bench`` (``make bench``, from the repository root) runs on a CPU in a few minutes with
small random-init models; ``--real-configs`` uses the real architectures' dimensions (meant for
GPUs). It lives outside the library, as Ray's release benchmarks do: the job's code has no
benchmark hooks, and the bench measures it from outside.

Layout:

* ``cli`` - the flags and the report's JSON; ``suites`` - the three suites (``model``: per
  model; ``ceiling``: the pipeline ceiling; ``startup``), each run in rounds over its variants.
* ``scenarios`` - one module per variant (family), registered by name in
  ``scenarios.SCENARIOS``; ``scenario`` says what one is and its suite.
* ``in_process`` - variants timed inside a fresh worker process each (``--worker``), so peak
  memory and thread settings are their own.
* ``call_trace`` (and ``trace_site/sitecustomize.py``) - the per-call trace (process starts,
  model loads, embedder and model calls) inside ``embedding-job run`` and the peers' scripts,
  added from outside the code measured; ``traced_run`` runs one such subprocess and reads it.
* ``peers/`` - the scripts users write instead (Daft's docs, Ray Data, a plain PyTorch loop);
  ``inputs`` - the same images in every input mode (folder, http, s3, binary, base64).
* ``gpu_run`` (and ``gpu_variant``) - the one-call GPU run, on its own (``make bench-gpu``).
* ``image_set``, ``model_configs``, ``tree_memory``, ``sampling``, ``machine``, ``report`` - the
  images, the models and their FLOPs, memory sampling, what the report says about the machine,
  and the derived figures (ratios, acceptance, the goals, the peer ratios, tables).

Variants (``--variants``, in this order):

* ``baseline`` - the original component: PIL ``open().convert("RGB")``,
  ``AutoImageProcessor(use_fast=True)`` and ``AutoModel`` per batch of 32.
* ``datapath_baseline`` - bytes → model-ready tensor with the Hugging Face processor only.
* ``datapath`` - bytes → model-ready tensor with this job's data path, inline on one thread.
* ``datapath_mt`` - the same on a pool of decode threads (one per CPU).
* ``embedder`` - ``Embedder.embed_bytes`` in-process, called per Daft-sized batch (the rows
  the pipeline gives each call of its UDF: ``pipeline.udf_batch_size``).
* ``embedder_stream`` - ``Embedder.embed_bytes`` on the whole set in one call (decode overlaps
  the model).
* ``two_models`` - one embedder of two models (the bench's model and a CLIP companion, ViT-B/32
  sized with ``--real-configs``) against two one-model embedders on the same images; the
  figure is the data path's CPU per image pair (``decode_cpu_ratio``, goal >= 1.6).
* ``daft_native`` / ``daft_ray`` - ``embedding-job run`` in a subprocess on the image folder;
  ``images_per_s`` is the steady state from the embedder's per-call trace (see
  ``scenarios.daft_pipeline``); ``end_to_end_images_per_s`` is N / T(N).
* ``peer_daft_docs`` / ``peer_ray_data`` / ``peer_torch_loop`` - the peers' scripts on the same
  folder and model (``scenarios.peers``); the job's ratios to them in ``peer_ratios``.
* ``ceiling_*`` - the pipeline ceiling (``scenarios.ceiling``); ``startup`` - the demo-sized
  job's start-up (``scenarios.startup``).

Per-core figures divide images/s by the CPU threads the variant uses; ``images_per_cpu_s`` is
images per CPU-second the process consumed (robust on a shared machine). ``--repeats`` rounds
run every variant in turn; each variant reports its best round (all rounds are in the JSON).
Peak memory: in-process variants report their process's peak RSS; pipeline variants the peak
of the RSS summed over the CLI's whole process tree (shared pages counted in every process);
``peak_pss_mb`` is the proportional share, summed over the tree, sampled every 0.25 s.
"""
