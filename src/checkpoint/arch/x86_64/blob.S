// The injected code: runs a SyscallBatch (checkpoint/syscall_batch.h) placed at %rdi and stops
// by sending itself SIGSTOP, which the tracer sees as a signal-delivery stop and discards. (An
// int3 would do too, but the kernel forces its SIGTRAP: with SIGTRAP blocked or ignored, as it may
// be in the target, that resets the target's SIGTRAP handler to SIG_DFL.) Position independent, uses no stack, keeps its state in callee-saved registers that
// `syscall` preserves (it clobbers only rcx and r11).
//   entry: nr (flags in bits 32..63; -1 ends the list), args[6], result; 64 bytes each.
    .section .rodata.cryo_blob, "a"
    .globl cryo_blob_start
    .globl cryo_blob_end
    .p2align 4
cryo_blob_start:
    mov     %rdi, %rbx
1:
    mov     (%rbx), %r12
    cmp     $-1, %r12
    je      3f
    mov     %r12d, %eax
    mov     8(%rbx), %rdi
    mov     16(%rbx), %rsi
    mov     24(%rbx), %rdx
    mov     32(%rbx), %r10
    mov     40(%rbx), %r8
    mov     48(%rbx), %r9
    syscall
    mov     %rax, 56(%rbx)
    add     $64, %rbx
    bt      $32, %r12
    jnc     1b
    cmp     $-4095, %rax
    jb      1b
3:
    mov     $186, %eax              // gettid
    syscall
    mov     %rax, %rdi
    mov     $19, %esi               // SIGSTOP
    mov     $200, %eax              // tkill
    syscall
    jmp     3b
    .p2align 4
cryo_blob_end:
    .section .note.GNU-stack, "", @progbits
