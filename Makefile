# postern: `make` builds bin/posternd and bin/posternctl; `make run` starts
# a demo instance; `make test` builds with ASan+UBSan and runs every test;
# `make screenshots` takes the web admin's pictures in docs/img.
# Missing Debian packages are installed by scripts/deps.sh (as root).

CC ?= cc
VERSION = 0.1.0
WARN = -Wall -Wextra -Wformat=2 -Wshadow -Werror
# libpq's header lives in its own directory (pkg-config --cflags libpq).
PQ_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -Iinclude $(PQ_CFLAGS) \
	-DPOSTERN_VERSION=\"$(VERSION)\" $(WARN) -MMD -MP
CFLAGS ?= -O2 -g
LIBS = -levent -levent_openssl -lssl -lcrypto -lsqlite3 -lpq -lcrypt -lcares \
	-lz -lpthread
SAN = -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

LIB_SRC = src/lib/xmalloc.c src/lib/buf.c src/lib/log.c src/lib/addr.c \
	src/lib/base64.c src/lib/authfail.c src/lib/tls.c src/lib/net.c \
	src/lib/sasl.c src/lib/file.c src/lib/counter.c src/lib/span.c \
	src/lib/strlist.c src/lib/worker.c src/lib/passwd.c src/lib/safefs.c \
	src/lib/cidr.c src/lib/accept.c src/lib/dns.c src/lib/committer.c \
	src/lib/mailnotify.c src/lib/deflate.c src/lib/stats.c \
	src/lib/metrics.c src/lib/chart.c src/lib/evout.c \
	src/config/config.c src/config/config_edit.c src/smtp/smtp_parse.c \
	src/smtp/smtp_data.c src/dir/dir.c src/dir/dir_sqlite.c \
	src/dir/dir_pgsql.c src/dir/dir_json.c \
	src/maildir/maildir.c \
	src/queue/delivery.c \
	src/policy/policy.c src/queue/queue_file.c src/queue/smtp_reply.c \
	src/queue/dsn.c src/policy/relay.c \
	src/pop3/pop3_parse.c src/pop3/pop3_read.c src/imap/imap_parse.c \
	src/imap/imap_view.c src/imap/imap_sort.c
# Milters (issue 15 part 2): the pure packet coder here, the connections
# and the session's hooks in D_SRC.
LIB_SRC += src/milter/milter_proto.c
# DKIM signing (issue 15 part 1): canonicalisation, keys, signatures.
LIB_SRC += src/dkim/dkim.c
# DNS blocklists (issue 15 part 3): the pure parts here, the lookups in
# D_SRC.
LIB_SRC += src/lib/dnsbl.c
# Sending caps (issue 15 part 4): the pure windows here, the hook in D_SRC.
LIB_SRC += src/lib/sendlimit.c src/lib/sendlimit_file.c
# MIME part tree and IMAP FETCH views (pure; issue 12).
MIME_SRC = src/mime/mime_parse.c src/mime/mime_param.c \
	src/mime/mime_decode.c src/mime/mime_addr.c src/mime/mime_imap.c \
	src/mime/mime_header.c src/mime/mime_search.c
LIB_SRC += $(MIME_SRC)
# The mailbox store: Maildir++ folders, flags, per-folder index (issue 12).
STORE_SRC = src/store/store.c src/store/store_util.c src/store/store_flags.c \
	src/store/store_index.c src/store/store_box.c src/store/store_ops.c \
	src/store/store_quota.c src/store/store_uidlist.c src/store/store_cache.c
LIB_SRC += $(STORE_SRC)
D_SRC = src/core/core.c src/core/core_session.c src/core/core_sasl.c \
	src/core/core_seen.c \
	src/smtp/smtp_server.c src/smtp/smtp_session.c src/cmd/posternd.c \
	src/queue/queue.c src/queue/outbound.c src/pop3/pop3_session.c \
	src/imap/imap_session.c src/imap/imap_folder.c src/imap/imap_fetch.c \
	src/admin/admin.c src/admin/admin_html.c src/admin/admin_pages.c \
	src/admin/admin_ops.c src/admin/admin_api.c src/admin/admin_confd.c \
	src/admin/admin_json.c
D_SRC += src/milter/milter_session.c src/smtp/smtp_milter.c
# DKIM signing at the SMTP delivery (issue 15 part 1).
D_SRC += src/smtp/smtp_dkim.c
CTL_SRC = src/cmd/posternctl.c src/cmd/posternctl_dkim.c # dkim: issue 15 part 1
D_SRC += src/smtp/smtp_dnsbl.c # issue 15 part 3
D_SRC += src/smtp/smtp_limit.c # sending caps (issue 15 part 4)
# The in-memory directory backend: tests only (unit, policy golden).
UNIT_SRC = $(wildcard tests/unit/*.c) src/dir/dir_fake.c
# The protocol-server core, driven directly by tests/unit/test_core.c.
UNIT_SRC += src/core/core.c src/core/core_session.c src/core/core_sasl.c \
	src/core/core_seen.c
# The IMAP folder queues, driven by tests/unit/test_imap_folder.c.
UNIT_SRC += src/imap/imap_folder.c
UNIT_SRC += src/admin/admin_json.c
# The web admin's escaping, by tests/unit/test_admin_html.c.
UNIT_SRC += src/admin/admin_html.c
# Durations and times as an admin reads them (posternctl, tests/unit).
LIB_SRC += src/lib/human.c

REL = build/rel
ASAN = build/asan
obj = $(patsubst %.c,$(1)/%.o,$(2))

all: bin/posternd bin/posternctl

deps:
	@scripts/deps.sh build

# ---- release build -------------------------------------------------------
$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

bin/posternd: $(call obj,$(REL),$(LIB_SRC) $(D_SRC))
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

bin/posternctl: $(call obj,$(REL),$(LIB_SRC) $(CTL_SRC))
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# ---- sanitizer build (used by every test) --------------------------------
$(ASAN)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -c $< -o $@

$(ASAN)/posternd: $(call obj,$(ASAN),$(LIB_SRC) $(D_SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS)

$(ASAN)/posternctl: $(call obj,$(ASAN),$(LIB_SRC) $(CTL_SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS)

$(ASAN)/unit_tests: $(call obj,$(ASAN),$(LIB_SRC) $(UNIT_SRC))
	$(CC) $(SAN) -o $@ $^ $(LIBS) -lcmocka

$(ASAN)/policy_golden: $(call obj,$(ASAN),$(LIB_SRC) src/dir/dir_fake.c \
	tests/policy/policy_golden.c)
	$(CC) $(SAN) -o $@ $^ $(LIBS)

asan: $(ASAN)/posternd $(ASAN)/posternctl $(ASAN)/unit_tests $(ASAN)/policy_golden

# Policy golden files: each tests/policy/X.in must produce X.out exactly.
policy-golden: $(ASAN)/policy_golden
	@pass=0; fail=0; for f in tests/policy/*.in; do \
		if $(ASAN)/policy_golden $$f | diff -u $${f%.in}.out - ; then \
			pass=$$((pass+1)); else fail=$$((fail+1)); fi; done; \
		echo "policy golden: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# ---- the two commands of README.md ---------------------------------------
run: deps all
	@scripts/demo.sh

# STYLE.md: gcc and clang both build with -Werror.
check-clang:
	@for f in $(LIB_SRC) $(D_SRC) $(CTL_SRC) src/dir/dir_fake.c; do \
		clang $(filter-out -MMD -MP,$(BASE_CFLAGS)) -fsyntax-only $$f \
			|| exit 1; done
	@echo "clang -Werror: ok"

# STYLE.md: the checked-in .clang-format is the layout.
format-check:
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h' 2>/dev/null || \
		find src include tests -name '*.[ch]') && echo "clang-format: ok"

# docs/architecture.md "Layout": no #include cycle between src/ folders.
include-graph:
	@scripts/include-graph.sh -q

# Run a second time with every server's directory on PostgreSQL
# (POSTERN_TEST_DIRECTORY, tests/proto/conftest.py): the files where the
# directory does the most.
PG_PROTO_TESTS = $(addprefix tests/proto/,test_directory.py test_auth.py \
	test_relay.py test_smtp.py test_pop3_login.py test_quota.py test_cli.py \
	test_imap.py test_admin_api.py test_send_limits.py)

test:
	@scripts/deps.sh test
	$(MAKE) format-check
	$(MAKE) include-graph
	$(MAKE) check-clang
	@echo "== the release build (make run's; -O2 warns where -O1 does not)"
	$(MAKE) all
	$(MAKE) asan
	@echo "== unit tests (cmocka, ASan+UBSan; with a private PostgreSQL)"
	tests/pg/pgtest.sh run -- $(ASAN)/unit_tests
	@echo "== policy golden files"
	$(MAKE) policy-golden
	@echo "== integration tests (pytest against the real daemon, ASan+UBSan)"
	POSTERND=$(CURDIR)/$(ASAN)/posternd POSTERNCTL=$(CURDIR)/$(ASAN)/posternctl \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/proto
	@echo "== the directory-heavy protocol tests again, on PostgreSQL (tests/pg/pgtest.sh)"
	POSTERN_TEST_DIRECTORY=postgresql \
		POSTERND=$(CURDIR)/$(ASAN)/posternd POSTERNCTL=$(CURDIR)/$(ASAN)/posternctl \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider $(PG_PROTO_TESTS)

# docs/img: the web admin's main pages at 1280x900 (README.md,
# docs/admin.md), taken in headless Chromium by test_docs_pages in
# tests/proto/test_admin_browser.py from a test server with a little
# traffic.  `make test` takes the same pictures into build/screenshots.
screenshots:
	@scripts/deps.sh test
	$(MAKE) asan
	POSTERN_SCREENSHOTS=$(CURDIR)/docs/img \
		POSTERND=$(CURDIR)/$(ASAN)/posternd POSTERNCTL=$(CURDIR)/$(ASAN)/posternctl \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider \
		tests/proto/test_admin_browser.py -k test_docs_pages

# ---- fuzzing (clang libFuzzer), bounded ---------------------------------
FUZZ_TARGETS = fuzz_smtp_cmd fuzz_addr fuzz_config fuzz_smtp_data \
	fuzz_queue_env fuzz_smtp_reply fuzz_accept fuzz_pop3_cmd fuzz_imap_cmd \
	fuzz_mime fuzz_store_index fuzz_store_uidlist fuzz_store_cache \
	fuzz_deflate fuzz_sort fuzz_dirjson fuzz_config_edit fuzz_admin_json \
	fuzz_milter fuzz_dkim fuzz_dnsbl fuzz_sendlimit
FUZZ_TIME ?= 20
FUZZ_FLAGS = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1
FUZZ_LIB = src/lib/xmalloc.c src/lib/buf.c src/lib/log.c src/lib/addr.c \
	src/config/config.c src/config/config_edit.c src/smtp/smtp_parse.c \
	src/smtp/smtp_data.c src/queue/queue_file.c src/queue/smtp_reply.c \
	src/policy/policy.c \
	src/lib/strlist.c src/lib/base64.c src/pop3/pop3_parse.c src/lib/sasl.c \
	src/lib/file.c src/lib/cidr.c src/lib/accept.c src/imap/imap_parse.c \
	src/lib/span.c src/imap/imap_sort.c src/dir/dir_json.c $(MIME_SRC) \
	$(STORE_SRC) src/milter/milter_proto.c src/dkim/dkim.c src/lib/dnsbl.c
# config.c parses send_limit_* rates (issue 15 part 4)
FUZZ_LIB += src/lib/sendlimit.c

# COMPRESS=DEFLATE's inflater: libevent buffers and zlib.
build/fuzz/fuzz_deflate: tests/fuzz/fuzz_deflate.c src/lib/deflate.c
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -Iinclude $(FUZZ_FLAGS) -o $@ $^ -levent -lz

# The admin API's JSON reader and writer: libevent buffers.
build/fuzz/fuzz_admin_json: tests/fuzz/fuzz_admin_json.c \
		src/admin/admin_json.c src/lib/xmalloc.c src/lib/log.c
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -Iinclude $(FUZZ_FLAGS) -o $@ $^ -levent

build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB)
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -Iinclude $(FUZZ_FLAGS) -o $@ $^ -lz -lcrypto

fuzz:
	@scripts/deps.sh test
	$(MAKE) $(addprefix build/fuzz/,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus-$$t; \
		echo "== $$t ($(FUZZ_TIME)s)"; \
		build/fuzz/$$t -max_total_time=$(FUZZ_TIME) -max_len=4096 \
			-dict=tests/fuzz/$$t.dict build/fuzz/corpus-$$t \
			tests/fuzz/corpus/$$t || exit 1; \
	done

bench: deps all
	@scripts/deps.sh bench
	bench/smtp_bench.sh
	/usr/bin/python3 bench/pop3_bench.py
	/usr/bin/python3 bench/imap_bench.py
	/usr/bin/python3 bench/auth_bench.py

clean:
	rm -rf build bin

.PHONY: all deps run test asan check-clang format-check include-graph \
	policy-golden screenshots fuzz bench clean

-include $(shell find build -name '*.d' 2>/dev/null)
