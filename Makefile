# paro — calibrates sparse and quantized attention for diffusion transformers.
#
#   make            build ./paro
#   make test       build and run every test that can run here
#   make demo       synth -> calibrate -> dump on the bundled sample
#   make help       list the targets
#
# Knobs (command line or config.mak):
#   V=1                         show the commands
#   SANITIZE=address,undefined  build everything with sanitizers (in build-san/)
#   HAVE_CUDA=0|1               default: 1 when nvcc is found
#   CUDA_ARCH=sm_90a            GPU architecture for nvcc (default: sm_90a, H100/H200
#                               with wgmma, from CUDA 12 on; sm_90 before)
#   REQUIRE_CUDA=1              the CUDA test suite must run (a skip fails)
#   PREFIX=/usr/local DESTDIR=  for install
-include config.mak

VERSION := 0.1.0

CC ?= cc
PKG_CONFIG ?= pkg-config
# Debian's python3, which sees Debian's numpy and torch (a python3 earlier on
# PATH, e.g. pyenv's, may not).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
INSTALL ?= install

Q := $(if $(filter 1,$(V)),,@)
quiet = $(if $(filter 1,$(V)),,@printf '  %-6s %s\n' $(1) $(2);)

# ---- CUDA probe (as zstd does for zlib: found means on, HAVE_CUDA=0 forces off)
CUDA_PATH ?= $(or $(patsubst %/bin/nvcc,%,$(shell command -v nvcc 2>/dev/null)),\
                  $(if $(wildcard /usr/local/cuda/bin/nvcc),/usr/local/cuda))
NVCC ?= $(if $(CUDA_PATH),$(CUDA_PATH)/bin/nvcc)
comma := ,
# nvcc alone is not enough: toolkits differ in where (and whether) they ship the
# runtime library, so look in the usual places and prefer the static one.
CUDA_LIBDIRS := $(CUDA_PATH)/lib64 $(CUDA_PATH)/lib $(wildcard $(CUDA_PATH)/targets/*/lib) \
                /usr/lib/x86_64-linux-gnu /usr/lib64
CUDART_STATIC := $(firstword $(wildcard $(addsuffix /libcudart_static.a,$(CUDA_LIBDIRS))))
CUDART_SHARED := $(firstword $(wildcard $(addsuffix /libcudart.so,$(CUDA_LIBDIRS))))
CUDART_LIBS := $(strip $(if $(CUDART_STATIC),-L$(dir $(CUDART_STATIC)) -lcudart_static,\
               $(if $(CUDART_SHARED),-L$(dir $(CUDART_SHARED)) -Wl$(comma)-rpath$(comma)$(dir $(CUDART_SHARED)) -lcudart)))
HAVE_CUDA ?= $(if $(and $(wildcard $(NVCC)),$(CUDART_LIBS)),1,0)
ifndef CUDA_ARCH
# sm_90a (H100/H200 with wgmma) where nvcc knows it, from CUDA 12 on; older
# toolkits (Debian's 11.8) build for sm_90 and the kernels use mma.sync.
NVCC_MAJOR := $(if $(NVCC),$(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p'))
CUDA_ARCH := $(if $(filter-out 1 2 3 4 5 6 7 8 9 10 11,$(NVCC_MAJOR)),sm_90a,sm_90)
endif

SANITIZE ?=
BUILD ?= $(if $(SANITIZE),build-san,build)

# ---- flags (user CFLAGS are added to ours, not put in their place)
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcjson zlib 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs libcjson zlib 2>/dev/null || echo -lcjson -lz)
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wformat=2 -Wno-format-nonliteral
OPT := $(if $(SANITIZE),-O1 -fno-omit-frame-pointer,-O2)
SAN := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-sanitize-recover=all)
override CFLAGS := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -g $(OPT) $(WARN) \
                   $(SAN) -pthread -MMD -MP -Iformats -Icalib -Imetrics -Ikernels \
                   -DPARO_VERSION='"$(VERSION)"' -DPARO_HAVE_CUDA=$(HAVE_CUDA) \
                   -DPARO_CUDA_ARCH='"$(CUDA_ARCH)"' $(DEP_CFLAGS) $(CFLAGS)
override LDFLAGS := $(SAN) -pthread $(LDFLAGS)
LIBS := $(DEP_LIBS) -lm

NVCCFLAGS ?= -O3 -lineinfo
ifeq ($(HAVE_CUDA),1)
CUDA_LIBS := $(CUDART_LIBS) -ldl -lrt -lstdc++
LINK_CC := $(CC)
endif

# ---- sources: the library is everything outside cli/ and tests/
LIB_C := $(wildcard formats/*.c calib/*.c metrics/*.c)
ifeq ($(HAVE_CUDA),1)
KERNEL_CU := $(wildcard kernels/*.cu)
KERNEL_C := $(filter-out kernels/stub.c,$(wildcard kernels/*.c))
else
KERNEL_CU :=
KERNEL_C := $(wildcard kernels/*.c)
endif
CLI_C := $(wildcard cli/*.c)

LIB_OBJ := $(LIB_C:%.c=$(BUILD)/%.o) $(KERNEL_C:%.c=$(BUILD)/%.o) $(KERNEL_CU:%.cu=$(BUILD)/%.cu.o)
CLI_OBJ := $(CLI_C:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libparo.a
BIN := $(BUILD)/paro

FUZZ_TARGETS := manifest safetensors plan npz npy
REPLAYS := $(FUZZ_TARGETS:%=$(BUILD)/tests/replay_%)
CPU_TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(filter-out tests/check_cuda%.c,$(wildcard tests/check_*.c)))
CUDA_TESTS := $(if $(filter 1,$(HAVE_CUDA)),$(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/check_cuda*.c)))
TEST_UTIL_OBJ := $(BUILD)/tests/testutil.o

.PHONY: all test demo deps install uninstall clean help check-cuda-banner
.DEFAULT_GOAL := all

## all: build ./paro (and the library build/libparo.a)
all: $(if $(SANITIZE),$(BIN),paro)

paro: $(BIN)
	$(Q)cp $(BIN) paro

# Rebuild everything when the flags change (git's GIT-CFLAGS).
$(BUILD)/FLAGS: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS) HAVE_CUDA=$(HAVE_CUDA) $(NVCC) $(NVCCFLAGS) $(CUDA_ARCH)' > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; \
	  echo '  cuda: $(if $(filter 1,$(HAVE_CUDA)),yes ($(CUDA_ARCH), $(NVCC)),no ($(if $(wildcard $(NVCC)),nvcc found but no libcudart beside it,nvcc not found); the CUDA backend is left out))'; fi
FORCE:

$(BUILD)/%.o: %.c $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,NVCC,$<)$(NVCC) $(NVCCFLAGS) -arch=$(CUDA_ARCH) -std=c++17 -Iformats -Ikernels \
	  -Xcompiler -Wall -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	$(call quiet,AR,$@)rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(call quiet,LINK,$@)$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LIBS) $(CUDA_LIBS) -o $@

# ---- tests
$(BUILD)/tests/check_%: tests/check_%.c $(TEST_UTIL_OBJ) $(LIB) $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Itests $< $(TEST_UTIL_OBJ) $(LIB) \
	  $(LDFLAGS) $(CHECK_LIBS) $(LIBS) $(CUDA_LIBS) -o $@

# Benchmarks: built by `make bench`; bench_cuda is run by
# tests/bench/calibrate_cuda.py, bench_score (CPU scoring and masks) and
# bench_crc (the digests' CRC-32) by hand.
$(BUILD)/tests/bench_%: tests/bench/bench_%.c $(LIB) $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LIBS) $(CUDA_LIBS) -o $@

.PHONY: bench
## bench: build the benchmark helpers (tests/bench/)
bench: $(BIN) $(BUILD)/tests/bench_score $(BUILD)/tests/bench_crc $(if $(filter 1,$(HAVE_CUDA)),$(BUILD)/tests/bench_cuda)

# Fuzz targets: replayed over the regression corpus by `make test` (normal
# compiler), or fuzzed by `make fuzz` (clang + libFuzzer, in build-fuzz/).
$(BUILD)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz_input.c $(LIB) $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS) -Itests/fuzz $(filter %.c,$^) $(LIB) $(LDFLAGS) $(LIBS) $(CUDA_LIBS) -o $@

$(BUILD)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_input.c $(LIB) $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS) -fsanitize=fuzzer -DPARO_FUZZ_MUTATOR -Itests/fuzz $(filter %.c,$^) $(LIB) $(LDFLAGS) -fsanitize=fuzzer $(LIBS) -o $@

FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
.PHONY: fuzz fuzz-run
## fuzz: run every libFuzzer target for FUZZ_SECONDS each (clang; build-fuzz/);
##       crashes land in build-fuzz/crashes/TARGET/: fix, then add them to tests/fuzz/corpus/
fuzz:
	$(Q)$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang HAVE_CUDA=0 \
	  SANITIZE=fuzzer-no-link,address,undefined fuzz-run

fuzz-run: $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz_%)
	$(Q)for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD)/corpus/$$t $(BUILD)/crashes/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(BUILD)/tests/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/crashes/$$t/ $(BUILD)/corpus/$$t tests/fuzz/corpus/$$t \
	    $$(case $$t in manifest) echo tests/bad/manifest;; safetensors) echo tests/bad/safetensors;; \
	       plan) echo tests/bad/plan;; esac) || exit 1; \
	done

$(BUILD)/tests/testutil.o: tests/testutil.c $(BUILD)/FLAGS
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Itests -c $< -o $@

## deps: install the Debian packages paro needs (apt-get; sudo when not root)
deps:
	$(Q).ci/deps

## test: build and run every test that can run here (CUDA suite skips without a GPU)
test:
	$(Q).ci/deps --test
	$(Q)$(MAKE) --no-print-directory test-run

.PHONY: print-python
print-python:
	@echo $(PYTHON)

.PHONY: test-run
test-run: $(BIN) $(CPU_TESTS) $(CUDA_TESTS) $(REPLAYS)
	$(Q)BUILD=$(BUILD) PARO=$(BIN) PYTHON=$(PYTHON) REQUIRE_CUDA=$(REQUIRE_CUDA) \
	  tests/run-all $(CPU_TESTS) $(CUDA_TESTS)

## demo: make a capture with `paro synth`, check it against samples/demo, calibrate, dump
demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)PYTHON=$(PYTHON) samples/demo.sh ./paro

## install: copy paro to $(DESTDIR)$(BINDIR), and the scripts `paro export
##          --to paroattn` runs to $(DESTDIR)$(PREFIX)/share/paro (paro looks
##          for them in ../share/paro beside itself)
install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PREFIX)/share/paro
	$(INSTALL) -m 755 paro $(DESTDIR)$(BINDIR)/paro
	$(INSTALL) -m 644 formats/python/paro_paroattn.py formats/python/paro_plan.py \
	  $(DESTDIR)$(PREFIX)/share/paro/

## uninstall: remove them again
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/paro $(DESTDIR)$(PREFIX)/share/paro/paro_paroattn.py \
	  $(DESTDIR)$(PREFIX)/share/paro/paro_plan.py
	-rmdir $(DESTDIR)$(PREFIX)/share/paro 2>/dev/null

## clean: remove build outputs
clean:
	rm -rf build build-san build-fuzz paro

## help: this list
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
