import Testing
import TetherCore

/// A profile in Docker's own format: the shape of moby's profiles/seccomp/default.json, with
/// archMap, defaultErrnoRet, includes/excludes by arch, caps and kernel, and argument rules.
let dockerFormatProfile = """
    {
      "defaultAction": "SCMP_ACT_ERRNO",
      "defaultErrnoRet": 1,
      "archMap": [
        { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
        { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"] }
      ],
      "syscalls": [
        {
          "names": ["read", "write", "openat", "close", "fstat", "newfstatat", "mmap", "mprotect",
                    "munmap", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "pread64",
                    "access", "execve", "exit_group", "exit", "arch_prctl", "set_tid_address",
                    "set_robust_list", "rseq", "prlimit64", "getrandom", "futex", "getpid",
                    "getuid", "geteuid", "getgid", "getegid", "uname", "ioctl", "lseek",
                    "getdents64", "statx", "fcntl", "readlink", "sysinfo", "faccessat2",
                    "cachestat", "fchmodat2"],
          "action": "SCMP_ACT_ALLOW"
        },
        {
          "names": ["personality"],
          "action": "SCMP_ACT_ALLOW",
          "args": [ { "index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ" } ]
        },
        {
          "names": ["personality"],
          "action": "SCMP_ACT_ALLOW",
          "args": [ { "index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ" } ]
        },
        {
          "names": ["arch_prctl"],
          "action": "SCMP_ACT_ALLOW",
          "includes": { "arches": ["amd64", "x32"] }
        },
        {
          "names": ["bpf", "perf_event_open"],
          "action": "SCMP_ACT_ALLOW",
          "includes": { "caps": ["CAP_BPF"] }
        },
        {
          "names": ["clone"],
          "action": "SCMP_ACT_ALLOW",
          "args": [ { "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" } ],
          "excludes": { "caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"] }
        },
        {
          "names": ["clone3"],
          "action": "SCMP_ACT_ERRNO",
          "errnoRet": 38,
          "excludes": { "caps": ["CAP_SYS_ADMIN"] }
        },
        {
          "names": ["socket"],
          "action": "SCMP_ACT_ALLOW",
          "args": [ { "index": 0, "value": 40, "op": "SCMP_CMP_NE" } ],
          "includes": { "minKernel": "4.8" },
          "comment": "everything but AF_VSOCK"
        }
      ]
    }
    """

@Suite("OCI / Docker profile parsing")
struct ProfileParserTests {
    @Test func dockerFormatLoads() throws {
        let p = try ProfileParser.parse(dockerFormatProfile, source: "docker.json")
        #expect(p.defaultAction == .errno)
        #expect(p.defaultErrnoRet == 1)
        #expect(p.archMap.count == 2)
        #expect(p.archMap[0].subArchitectures == ["SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        #expect(p.syscalls.count == 8)
        #expect(p.syscalls[5].args[0] == ArgCondition(index: 0, value: 2114060288, valueTwo: 0, op: .maskedEqual))
        #expect(p.syscalls[5].excludes.caps == ["CAP_SYS_ADMIN"])
        #expect(p.syscalls[7].includes.minKernel == "4.8")
        #expect(p.syscalls[7].comment == "everything but AF_VSOCK")
    }

    @Test func includesAndExcludesFollowDocker() throws {
        let p = try ProfileParser.parse(dockerFormatProfile)
        let amd64 = TargetPlatform(
            seccompArch: "SCMP_ARCH_X86_64", dockerArch: "amd64", capabilities: [], kernel: KernelVersion("6.1.0-18-amd64"))
        let names = Set(p.resolve(for: amd64).map(\.name))
        #expect(names.contains("arch_prctl"))
        #expect(!names.contains("bpf"), "includes.caps needs CAP_BPF")
        #expect(names.contains("clone"))
        #expect(names.contains("socket"))

        var admin = amd64
        admin.capabilities = ["CAP_SYS_ADMIN", "CAP_BPF"]
        let adminNames = Set(p.resolve(for: admin).map(\.name))
        #expect(adminNames.contains("bpf"))
        #expect(!adminNames.contains("clone3"), "excludes.caps CAP_SYS_ADMIN")

        let arm = TargetPlatform(seccompArch: "SCMP_ARCH_AARCH64", dockerArch: "arm64", capabilities: [], kernel: KernelVersion("4.4"))
        let armRules = p.resolve(for: arm)
        #expect(!armRules.contains { $0.name == "socket" }, "minKernel 4.8 on a 4.4 kernel")
        #expect(armRules.filter { $0.name == "arch_prctl" }.count == 1, "only the unconditional list names it on arm64")
    }

    @Test func resolvedRulesCarryTheirJSONPath() throws {
        let p = try ProfileParser.parse(dockerFormatProfile)
        let amd64 = TargetPlatform(seccompArch: "SCMP_ARCH_X86_64", dockerArch: "amd64", capabilities: [], kernel: nil)
        let r = p.resolve(for: amd64).first { $0.name == "clone3" }
        #expect(r?.path == "$.syscalls[6].names[0]")
        #expect(r?.errnoRet == 38)
    }

    @Test("containers-common's form (Podman): errno names next to or instead of errnoRet, x86 in arches")
    func errnoNames() throws {
        let p = try ProfileParser.parse(
            #"""
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "defaultErrno": "ENOSYS",
             "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errno": "EPERM"},
                          {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "errno": "EINVAL",
                           "includes": {"arches": ["x86", "amd64"]}}]}
            """#)
        #expect(p.defaultErrnoRet == 38)
        #expect(p.syscalls[0].errnoRet == 1 && p.syscalls[1].errnoRet == 22)
    }

    @Test func builtinProfilesRoundTripThroughJSON() throws {
        for name in BuiltinProfiles.names {
            let p = try #require(BuiltinProfiles.named(name))
            let again = try ProfileParser.parse(p.jsonText(), source: name)
            #expect(again == p, "\(name) survives show → parse")
        }
    }

    @Test func defaultProfileDeniesWhatTheDesignSays() throws {
        let denied = Set(BuiltinProfiles.defaultDenied)
        for s in [
            "setsid", "setpgid", "ptrace", "process_vm_readv", "process_vm_writev",
            "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
            "userfaultfd", "mount", "umount2", "unshare", "setns", "keyctl", "add_key",
            "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
            "kexec_file_load", "reboot", "swapon", "swapoff", "pivot_root", "chroot", "acct",
        ] {
            #expect(denied.contains(s), "\(s) is denied")
        }
        #expect(Set(BuiltinProfiles.defaultAllowed).isDisjoint(with: denied))
    }

    // MARK: - malformed profiles: each error names the field

    static let malformed: [(String, String, String)] = [
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_FOO"}]}"#,
            "$.syscalls[0].action", "unknown action \"SCMP_ACT_FOO\""
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
            "$.syscalls[0].args[0].op", "unknown operator \"SCMP_CMP_ALMOST\""
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}"#,
            "$.syscalls[0].names", "expected an array, found a string"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", 7], "action": "SCMP_ACT_ALLOW"}]}"#,
            "$.syscalls[0].names[1]", "expected a string, found a number"
        ),
        (#"{"defaultAction": 1}"#, "$.defaultAction", "expected a string, found a number"),
        (#"{"syscalls": []}"#, "$.defaultAction", "required field is missing"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}"#, "$.defaultErrnoRet", "non-negative integer"),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "$.syscalls[0].args[0].index", "arguments 0 to 5"
        ),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultAcion": "SCMP_ACT_ALLOW"}"#, "$.defaultAcion", "unknown field"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#, "$.architectures[0]", "unknown architecture"),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"}]}]}"#,
            "$.syscalls[0].args[0].value", "non-negative integer"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
            "$.syscalls[0].includes.minKernel", "kernel version"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "$.syscalls[0].action", "SCMP_ACT_NOTIFY"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
            "$.syscalls[0].names", "at least one syscall name"
        ),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOPE"}"#, "$.defaultErrno", "unknown errno name"),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "defaultErrno": "ENOSYS"}"#, "$.defaultErrno",
            "ENOSYS is 38 but defaultErrnoRet says 1"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": 1}]}"#,
            "$.syscalls[0].errno", "expected a string"
        ),
        (#"["SCMP_ACT_ALLOW"]"#, "$", "expected an object, found an array"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO",, }"#, "$", "not valid JSON"),
    ]

    @Test(arguments: 0..<malformed.count)
    func malformedProfileNamesTheField(_ i: Int) {
        let (json, path, message) = Self.malformed[i]
        do {
            _ = try ProfileParser.parse(json, source: "bad.json")
            Issue.record("accepted: \(json)")
        } catch {
            #expect(error.path == path)
            #expect(error.message.contains(message), "\(error.message)")
            #expect(error.description.hasPrefix("bad.json: \(path): "))
        }
    }

    @Test func resourceLimitsParse() {
        #expect(ResourceLimit(parsing: "nofile=1024") == ResourceLimit(.nofile, soft: 1024, hard: 1024))
        #expect(ResourceLimit(parsing: "nproc=64:128") == ResourceLimit(.nproc, soft: 64, hard: 128))
        #expect(ResourceLimit(parsing: "as=infinity")?.hard == .max)
        #expect(ResourceLimit(parsing: "nproc=128:64") == nil, "soft above hard")
        #expect(ResourceLimit(parsing: "bogus=1") == nil)
    }

    @Test func workerEnvironmentIsScrubbed() {
        let sup = ["PATH": "/bin", "HOME": "/root", "TETHER_KEY_FILE": "/etc/tether/key", "AWS_SECRET_ACCESS_KEY": "x", "LC_ALL": "C"]
        let env = EnvironmentPolicy.workerEnvironment(
            supervisor: sup, spec: WorkerSpec(command: ["x"], environment: ["MODE": "1", "TETHER_AUTHORITY": "http://evil"]))
        #expect(env == ["PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "MODE": "1"])
    }
}
