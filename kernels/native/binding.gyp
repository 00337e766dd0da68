{
  "targets": [
    {
      "target_name": "shardnet_cpu",
      "sources": ["shardnet_cpu.c"],
      "include_dirs": ["<!(echo ${OPENBLAS_INCLUDE_DIR:-/usr/include/x86_64-linux-gnu/openblas-openmp})"],
      "cflags": ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-std=c11", "-Wall", "-Wno-unused-parameter"],
      "cflags!": ["-O2", "-O0"],
      "ldflags": [
        "-fopenmp",
        "-L<!(echo ${OPENBLAS_LIB_DIR:-/usr/lib/x86_64-linux-gnu/openblas-openmp})",
        "-Wl,-rpath,<!(echo ${OPENBLAS_LIB_DIR:-/usr/lib/x86_64-linux-gnu/openblas-openmp})"
      ],
      "libraries": ["-l:libopenblas.so.0"]
    }
  ]
}
