"""The memory profiler: measurement (`profiler`), the request-driven sampler in every web
worker (`sampler`), leak detection (`leaks`), the outside watcher behind `profilememory`
(`watch`), the store's reads and writes (`selectors`, `services`), the page (`views`,
`urls`, `forms`, `charts`) and /metrics (`metrics`). Its models are perf.models (one app).
"""
