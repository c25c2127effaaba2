# mw: one binary with the C core and the embedded Lua sources.
PKGS     := lua5.4 libcurl libuv yaml-0.1
CC       ?= cc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Icore $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += -llua5.4-cjson -lhttp_parser $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
LUA_SRC  := $(sort $(wildcard lua/mw/*.lua stdlib/mw/*.lua))
C_SRC    := $(sort $(wildcard core/*.c))
OBJ      := $(C_SRC:core/%.c=build/%.o) build/embedded.o
ASAN_OBJ := $(C_SRC:core/%.c=build/asan/%.o) build/asan/embedded.o
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all deps test unit check-asan run bench clean examples

all: mw

mw: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS)

build/%.o: core/%.c core/*.h | build
	$(CC) $(CFLAGS) -c -o $@ $<

# compiles each module to bytecode with the liblua mw links (tools/embed.c)
build/embed: tools/embed.c | build
	$(CC) -O2 -Wall -Wextra -Werror $(shell pkg-config --cflags lua5.4 2>/dev/null) -o $@ $< \
	  $(shell pkg-config --libs lua5.4 2>/dev/null)

build/embedded.c: build/embed build/holder $(LUA_SRC)
	build/embed --holder=build/holder $(LUA_SRC) > $@.tmp && mv $@.tmp $@

# the network holder's process (mw.holder): static, no libc, a few kB
build/holder: tools/holder.c | build
	$(CC) -static -nostdlib -Os -s -fno-stack-protector -fno-asynchronous-unwind-tables -Wall -Wextra -Werror \
	  -o $@ $<

build/embedded.o: build/embedded.c
	$(CC) $(CFLAGS) -c -o $@ $<

build:
	mkdir -p build build/asan

mw-asan: $(ASAN_OBJ)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -o $@ $(ASAN_OBJ) $(LDLIBS)

build/asan/%.o: core/%.c core/*.h | build
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -c -o $@ $<

build/asan/embedded.o: build/embedded.c | build
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -c -o $@ $<

deps:
	@scripts/deps.sh

# The example stacks' static binaries and busybox copy (fast when up to date).
examples: deps
	@$(MAKE) --no-print-directory -C examples

# Everything, against a Docker engine (started here when none answers and we are root);
# fails when the engine tests cannot run.
test: deps examples
	@$(MAKE) --no-print-directory mw build/kahttpd
	@scripts/test.sh

# The unit tests alone: no engine, no examples, no package installs.
unit: mw
	@scripts/test.sh unit

check-asan: deps
	@$(MAKE) --no-print-directory mw-asan
	@MW_BIN=./mw-asan scripts/test.sh unit

run: deps examples
	@$(MAKE) --no-print-directory mw
	@scripts/with-engine.sh ./mw run examples/pipeline/stack.lua

bench: deps
	@$(MAKE) --no-print-directory mw build/kahttpd
	@scripts/with-engine.sh tests/bench/run.sh

# a keep-alive HTTP endpoint for the heartbeat tests and benchmark, static for a FROM scratch image
build/kahttpd: tests/bench/kahttpd.c | build
	$(CC) -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -static -o $@ $<

clean:
	rm -rf build mw mw-asan
	-$(MAKE) --no-print-directory -C examples clean

# Reliability: the fault proxy the fault tests put between mw and the engine, libFuzzer
# targets, valgrind over the unit tests, and the long soak (scripts/fuzz.sh, soak.sh, valgrind.sh).
.PHONY: fuzz soak check-valgrind fault-proxy

fault-proxy: build/mw-fault-proxy

build/mw-fault-proxy: tests/faults/proxy.c | build
	$(CC) -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $<

fuzz:
	@scripts/fuzz.sh

soak: deps
	@$(MAKE) --no-print-directory mw build/mw-fault-proxy
	@scripts/soak.sh

check-valgrind: deps
	@$(MAKE) --no-print-directory mw
	@scripts/valgrind.sh
