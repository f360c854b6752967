// Command seccomp-filter prints the seccomp filter a container gets from containerd with `seccompProfile:
// RuntimeDefault`, as the classic BPF program (an array of struct sock_filter) the kernel loads.
//
// The profile is containerd's own default, computed for the container's bounding capabilities (it opens some system
// calls only to holders of a capability, as `chroot` to CAP_SYS_CHROOT). It is compiled by libseccomp, as runc
// compiles it, for this machine's architecture. The real-Dify harness (tests/dify) loads the program into each
// container's process before exec.
//
// Usage: seccomp-filter [CAP_NAME...] >filter.bpf
package main

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	libseccomp "github.com/seccomp/libseccomp-golang"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "seccomp-filter: %v\n", err)
		os.Exit(1)
	}
}

func run(capabilities []string) error {
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: capabilities}}}
	profile := seccomp.DefaultProfile(spec)
	defaultAction, err := action(profile.DefaultAction, profile.DefaultErrnoRet)
	if err != nil {
		return fmt.Errorf("the profile's default action: %w", err)
	}
	filter, err := libseccomp.NewFilter(defaultAction)
	if err != nil {
		return fmt.Errorf("creating the filter: %w", err)
	}
	defer filter.Release()
	// The harness sets no_new_privs itself where the rendering says so; loading the filter must not set it.
	if err := filter.SetNoNewPrivsBit(false); err != nil {
		return err
	}
	for _, rule := range profile.Syscalls {
		ruleAction, err := action(rule.Action, rule.ErrnoRet)
		if err != nil {
			return fmt.Errorf("the rule for %v: %w", rule.Names, err)
		}
		for _, name := range rule.Names {
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				continue // not a system call of this architecture
			}
			if err := addRule(filter, call, ruleAction, rule.Args); err != nil {
				return fmt.Errorf("the rule for %s: %w", name, err)
			}
		}
	}
	return filter.ExportBPF(os.Stdout)
}

// addRule adds one system call's rule. Conditions on distinct arguments must all hold, so they form one rule;
// several conditions on the same argument are alternatives, so each forms a rule of its own.
func addRule(filter *libseccomp.ScmpFilter, call libseccomp.ScmpSyscall, act libseccomp.ScmpAction, args []specs.LinuxSeccompArg) error {
	if len(args) == 0 {
		return filter.AddRule(call, act)
	}
	conditions := make([]libseccomp.ScmpCondition, 0, len(args))
	seen := map[uint]bool{}
	distinct := true
	for _, arg := range args {
		condition, err := condition(arg)
		if err != nil {
			return err
		}
		conditions = append(conditions, condition)
		distinct = distinct && !seen[arg.Index]
		seen[arg.Index] = true
	}
	if distinct {
		return filter.AddRuleConditional(call, act, conditions)
	}
	for _, c := range conditions {
		if err := filter.AddRuleConditional(call, act, []libseccomp.ScmpCondition{c}); err != nil {
			return err
		}
	}
	return nil
}

func condition(arg specs.LinuxSeccompArg) (libseccomp.ScmpCondition, error) {
	operators := map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
		specs.OpNotEqual:     libseccomp.CompareNotEqual,
		specs.OpLessThan:     libseccomp.CompareLess,
		specs.OpLessEqual:    libseccomp.CompareLessOrEqual,
		specs.OpEqualTo:      libseccomp.CompareEqual,
		specs.OpGreaterEqual: libseccomp.CompareGreaterEqual,
		specs.OpGreaterThan:  libseccomp.CompareGreater,
		specs.OpMaskedEqual:  libseccomp.CompareMaskedEqual,
	}
	op, ok := operators[arg.Op]
	if !ok {
		return libseccomp.ScmpCondition{}, fmt.Errorf("comparison %q", arg.Op)
	}
	if op == libseccomp.CompareMaskedEqual {
		return libseccomp.MakeCondition(arg.Index, op, arg.Value, arg.ValueTwo)
	}
	return libseccomp.MakeCondition(arg.Index, op, arg.Value)
}

func action(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	errno := uint(1) // EPERM, as runc answers without an errnoRet
	if errnoRet != nil {
		errno = *errnoRet
	}
	switch a {
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(int16(errno)), nil
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("action %q", a)
}
