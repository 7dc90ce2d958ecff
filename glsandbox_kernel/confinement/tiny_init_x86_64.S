.intel_syntax noprefix
.globl _start
_start:
    mov edi, 1              # prctl(PR_SET_PDEATHSIG, SIGKILL)
    mov esi, 9
    mov eax, 157
    syscall
    mov rax, 0x6f62646e61736c67  # prctl(PR_SET_NAME, "glsandbox-init")
    mov rdx, 0x74696e692d78
    push rdx
    push rax
    mov edi, 15
    mov rsi, rsp
    mov eax, 157
    syscall
    push 0x14a07            # the set: HUP INT QUIT USR1 USR2 TERM CHLD
    mov rbx, rsp
    xor edi, edi            # rt_sigprocmask(SIG_BLOCK, &set, NULL, 8)
    mov rsi, rbx
    xor edx, edx
    mov r10d, 8
    mov eax, 14
    syscall
    mov edi, -1             # signalfd4(-1, &set, 8, 0)
    mov rsi, rbx
    mov edx, 8
    xor r10d, r10d
    mov eax, 289
    syscall
    test rax, rax
    js fail
    mov r12, rax
    sub rsp, 136            # [rsp]: signalfd_siginfo (128 bytes), [rsp+128]: wait status
reap:
    mov edi, -1             # wait4(-1, &status, WNOHANG, NULL)
    lea rsi, [rsp+128]
    mov edx, 1
    xor r10d, r10d
    mov eax, 61
    syscall
    cmp rax, 2
    je worker_done
    test rax, rax
    jg reap
    js fail
wait_signal:
    mov rdi, r12            # read(signalfd, &info, 128)
    mov rsi, rsp
    mov edx, 128
    xor eax, eax
    syscall
    cmp rax, 128
    jne read_failed
    mov esi, dword ptr [rsp]
    cmp esi, 17
    je reap
    mov edi, 2              # kill(2, signo)
    mov eax, 62
    syscall
    jmp wait_signal
read_failed:
    cmp rax, -4
    je wait_signal
    jmp fail
worker_done:
    mov edi, 3              # write(3, &status, 4)
    lea rsi, [rsp+128]
    mov edx, 4
    mov eax, 1
    syscall
    mov eax, dword ptr [rsp+128]
    mov edi, eax
    and edi, 0x7f
    jz exited
    add edi, 128
    jmp out
exited:
    shr eax, 8
    movzx edi, al
out:
    mov eax, 231            # exit_group
    syscall
fail:
    mov edi, 255
    mov eax, 231
    syscall
