// Retarget: makes an assembly that mono's mcs compiled against mono's own
// framework into a .NET Standard 2.1 assembly, so that one file loads on
// .NET Core 3.0+, .NET 5+ and mono 6.4+.
//
//   mono Retarget.exe IN.dll OUT.dll NETSTANDARD.dll
//
// mcs can only compile against mono's profile: every type reference in its
// output names mscorlib, System or System.Core as the assembly that defines
// it. A .NET Standard library names netstandard instead, and each runtime
// forwards from its own netstandard.dll to wherever it keeps the type. This
// tool moves every framework type reference to netstandard 2.1, after
// checking that NETSTANDARD.dll (a netstandard 2.1 facade, such as the one a
// .NET Core runtime ships) forwards or defines that type; a type outside
// .NET Standard 2.1 is an error, not a file that fails to load later.
// Declarative security (mcs's SkipVerification request for unsafe code),
// which names mscorlib by string and which .NET Core ignores, is dropped.
//
// One signature differs, not just the assembly: mono's corlib declares
// ReadOnlySpan<T>'s by-reference members (the indexer, GetPinnableReference
// that `fixed` calls, the enumerator's Current) as returning `ref T`, where
// .NET Standard has `ref readonly T`, which is `ref T` marked with a
// required modifier (InAttribute). .NET binds a call by its exact
// signature, so a call as mono wrote it is a MissingMethodException there;
// such calls get the modifier.
using System;
using System.Collections.Generic;
using System.Linq;
using Mono.Cecil;

static class Retarget
{
    static readonly string[] Framework = { "mscorlib", "System", "System.Core", "System.Memory", "System.Runtime" };

    static int Main(string[] args)
    {
        if (args.Length != 3)
        {
            Console.Error.WriteLine("usage: Retarget.exe IN.dll OUT.dll NETSTANDARD.dll");
            return 2;
        }
        var standard = ModuleDefinition.ReadModule(args[2]);
        var version = standard.Assembly.Name.Version;
        if (version < new Version(2, 1, 0, 0))
        {
            Console.Error.WriteLine("Retarget: {0} is netstandard {1}, not 2.1", args[2], version);
            return 1;
        }
        var known = new HashSet<string>(standard.ExportedTypes.Select(t => t.FullName)
            .Concat(standard.Types.Select(t => t.FullName)));

        var module = ModuleDefinition.ReadModule(args[0]);
        // A program compiled against a netstandard library already names
        // netstandard itself: that reference is the one to use.
        var target = module.AssemblyReferences.FirstOrDefault(r => r.Name == "netstandard");
        if (target == null)
        {
            target = new AssemblyNameReference("netstandard", new Version(2, 1, 0, 0))
            {
                PublicKeyToken = standard.Assembly.Name.PublicKeyToken,
            };
            module.AssemblyReferences.Add(target);
        }
        var missing = new SortedSet<string>();
        foreach (var type in module.GetTypeReferences())
        {
            if (type.DeclaringType != null) continue; // nested: follows its outer type
            var scope = type.Scope as AssemblyNameReference;
            if (scope == null || !Framework.Contains(scope.Name)) continue;
            if (!known.Contains(type.FullName)) missing.Add(type.FullName + " (from " + scope.Name + ")");
            type.Scope = target;
        }
        var readOnlyRef = new TypeReference("System.Runtime.InteropServices", "InAttribute", module, target);
        var calls = module.GetTypes().SelectMany(t => t.Methods).Where(m => m.HasBody)
            .SelectMany(m => m.Body.Instructions).Select(i => i.Operand as MethodReference).Where(r => r != null);
        foreach (var method in calls)
        {
            var owner = method.DeclaringType.GetElementType().FullName;
            if (owner != "System.ReadOnlySpan`1" && owner != "System.ReadOnlySpan`1/Enumerator") continue;
            if (method.ReturnType is ByReferenceType)
                method.ReturnType = new RequiredModifierType(readOnlyRef, method.ReturnType);
        }
        if (missing.Count > 0)
        {
            Console.Error.WriteLine("Retarget: not in .NET Standard 2.1: " + string.Join(", ", missing));
            return 1;
        }
        foreach (var old in module.AssemblyReferences.Where(r => Framework.Contains(r.Name)).ToList())
            module.AssemblyReferences.Remove(old);
        module.Assembly.SecurityDeclarations.Clear();
        module.Write(args[1]);
        return 0;
    }
}
