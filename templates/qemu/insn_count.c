/*
 * insn_count.c - a QEMU TCG plugin that counts the instructions of one function call.
 *
 * `mnist-edge bench` loads it into qemu-system-arm for cores unicorn does not model
 * (the Cortex-M55 with MVE). Arguments: start=ADDR (the function's entry), stop=ADDR
 * (the return address of the call), stack_lo=ADDR, stack_hi=ADDR (the stack region),
 * out=FILE. From the first translation block that
 * begins at `start` to the first that begins at `stop`, every block executed appends
 * one record to FILE: two little-endian uint32, its address and its instruction
 * count (QEMU translates IT blocks and MVE-predicated instructions whole, so a block
 * counts every instruction it holds, as the unicorn counter does). Stores into the stack
 * region are watched too: FILE.stack gets the highest address stored by the first block (the return
 * address that the callee's PUSH saves just below its entry stack pointer) and the
 * lowest address stored during the call, for the stack high-water mark.
 *
 * Only the few declarations of QEMU's plugin API (version 1, QEMU 5.2 to 8.x) that
 * this file uses are written here, so no QEMU headers are needed to build it:
 *   gcc -shared -fPIC -O2 -o insn_count.so insn_count.c
 *
 * Part of mnist-edge; a host tool, never part of a firmware.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------- QEMU plugin API, version 1 */
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
typedef struct {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    } u;
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*vcpu_mem_cb)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                            uint64_t vaddr, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, vcpu_mem_cb cb,
                                      enum qemu_plugin_cb_flags flags,
                                      enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv);

/* ------------------------------------------------------------------ the counter */
enum { IDLE, COUNTING, DONE };

static uint64_t start_addr, stop_addr, stack_lo, stack_hi;
static FILE *blocks;
static char stack_path[4096];
static int state = IDLE;
static bool first_block;
static uint64_t entry_top, lowest = UINT64_MAX;

static void write_stack(void)
{
    FILE *f = fopen(stack_path, "w");
    if (f != NULL) {
        fprintf(f, "%llu %llu\n", (unsigned long long)entry_top, (unsigned long long)lowest);
        fclose(f);
    }
}

/* userdata packs the block: its address in the high 32 bits, its instructions below. */
static void on_block(unsigned int vcpu_index, void *userdata)
{
    const uint64_t packed = (uint64_t)(uintptr_t)userdata;
    uint32_t record[2];
    (void)vcpu_index;
    record[0] = (uint32_t)(packed >> 32);
    record[1] = (uint32_t)(packed & 0xFFFFFFFFu);
    first_block = false;
    if (state == IDLE) {
        if (record[0] != start_addr) {
            return;
        }
        state = COUNTING;
        first_block = true;
    } else if (state == COUNTING && record[0] == stop_addr) {
        state = DONE;
        fflush(blocks);
        write_stack();
        return;
    }
    if (state == COUNTING) {
        fwrite(record, sizeof record, 1, blocks);
    }
}

static void on_store(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                     void *userdata)
{
    (void)vcpu_index;
    (void)info;
    (void)userdata;
    if (state != COUNTING || vaddr < stack_lo || vaddr >= stack_hi) {
        return;
    }
    if (first_block && vaddr > entry_top) {
        entry_top = vaddr;
    }
    if (vaddr < lowest) {
        lowest = vaddr;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    const uint64_t n = qemu_plugin_tb_n_insns(tb);
    const uint64_t packed = (qemu_plugin_tb_vaddr(tb) << 32) | n;
    size_t i;
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)packed);
    for (i = 0; i < n; i++) {
        qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_store,
                                         QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_W, NULL);
    }
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    if (blocks != NULL) {
        fclose(blocks);
        blocks = NULL;
    }
}

int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *out = NULL;
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "start=", 6) == 0) {
            start_addr = strtoull(argv[i] + 6, NULL, 0);
        } else if (strncmp(argv[i], "stop=", 5) == 0) {
            stop_addr = strtoull(argv[i] + 5, NULL, 0);
        } else if (strncmp(argv[i], "stack_lo=", 9) == 0) {
            stack_lo = strtoull(argv[i] + 9, NULL, 0);
        } else if (strncmp(argv[i], "stack_hi=", 9) == 0) {
            stack_hi = strtoull(argv[i] + 9, NULL, 0);
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            out = argv[i] + 4;
        }
    }
    if (out == NULL || start_addr == 0 || stop_addr == 0 || stack_hi <= stack_lo ||
        (size_t)snprintf(stack_path, sizeof stack_path, "%s.stack", out) >= sizeof stack_path) {
        fprintf(stderr, "insn_count: give start=,stop=,stack_lo=,stack_hi=,out=FILE\n");
        return 1;
    }
    blocks = fopen(out, "wb");
    if (blocks == NULL) {
        fprintf(stderr, "insn_count: cannot write %s\n", out);
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
