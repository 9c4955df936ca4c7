/* Entry and trap entry of the virtio-core test kernel (riscv64, S-mode, MMU off).
 *
 * _start: OpenSBI enters here in S-mode with a0 = hartid, a1 = DTB physical address
 * (reference/qemu-riscv-virt.md §2). With -smp > 1, OpenSBI's HSM keeps the other harts
 * stopped, but firmware that releases every hart here is handled too: the first hart to
 * win the lottery boots, the others park in wfi forever. */

    .section .text.entry, "ax", @progbits
    .globl _start
_start:
.option push
.option norelax
    la      gp, __global_pointer$
.option pop
    csrw    sie, zero               /* polled kernel: no interrupts */
    la      t0, boot_lottery
    li      t1, 1
    amoswap.w.aqrl t1, t1, (t0)
    bnez    t1, park

    la      sp, __stack_top
    la      t0, trap_entry
    csrw    stvec, t0               /* any fault is reported, never a jump to address 0 */

    la      t0, __bss_start         /* zero .bss (boot_lottery lives in .data) */
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:
    call    kmain                   /* kmain(hartid, dtb) never returns */
park:
    wfi
    j       park

/* Trap entry: save the integer registers into a frame on the stack and call
 * kernel_trap(frame), which reports scause/sepc/stval and exits QEMU. Direct mode: stvec
 * must be 4-byte aligned. */
    .section .text, "ax", @progbits
    .balign 4
    .globl trap_entry
trap_entry:
    addi    sp, sp, -256
    sd      x1, 8(sp)
    sd      x3, 24(sp)
    sd      x4, 32(sp)
    sd      x5, 40(sp)
    sd      x6, 48(sp)
    sd      x7, 56(sp)
    sd      x8, 64(sp)
    sd      x9, 72(sp)
    sd      x10, 80(sp)
    sd      x11, 88(sp)
    sd      x12, 96(sp)
    sd      x13, 104(sp)
    sd      x14, 112(sp)
    sd      x15, 120(sp)
    sd      x16, 128(sp)
    sd      x17, 136(sp)
    sd      x18, 144(sp)
    sd      x19, 152(sp)
    sd      x20, 160(sp)
    sd      x21, 168(sp)
    sd      x22, 176(sp)
    sd      x23, 184(sp)
    sd      x24, 192(sp)
    sd      x25, 200(sp)
    sd      x26, 208(sp)
    sd      x27, 216(sp)
    sd      x28, 224(sp)
    sd      x29, 232(sp)
    sd      x30, 240(sp)
    sd      x31, 248(sp)
    addi    t0, sp, 256
    sd      t0, 16(sp)              /* x2 (sp) as it was at the trap */
    mv      a0, sp
    call    kernel_trap             /* [[noreturn]] */
3:  j       3b

    .section .data, "aw", @progbits
    .balign 4
boot_lottery:
    .word   0
