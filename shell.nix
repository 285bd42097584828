# NixOS / ROCm workstation shell for dlm-bench (the paper's non-cluster path).
#   nix-shell            # then: ./run.sh  (uses the ROCm torch below instead of the CPU pin)
# Python 3.13 with ROCm PyTorch from nixpkgs; the remaining requirements come from PyPI into .venv
# (created with --system-site-packages so the Nix torch is visible).
{ pkgs ? import <nixpkgs> { config.allowUnfree = true; config.rocmSupport = true; } }:

let
  python = pkgs.python313;
  pythonEnv = python.withPackages (ps: [ ps.torchWithRocm ps.pip ps.virtualenv ]);
in
pkgs.mkShell {
  packages = [ pythonEnv pkgs.git pkgs.rocmPackages.rocminfo pkgs.rocmPackages.rocm-smi ];

  # The GPU target: set to your card's gfx architecture (rocminfo | grep gfx), e.g. gfx1100 (RX 7900).
  PYTORCH_HIP_ARCH = "gfx1100";
  # Consumer cards not on ROCm's official list need the nearest supported ISA, e.g. 11.0.0 for RDNA3.
  HSA_OVERRIDE_GFX_VERSION = "11.0.0";

  shellHook = ''
    export DLM_VENV="$PWD/.venv-rocm"
    if [ ! -x "$DLM_VENV/bin/python" ]; then
      python -m venv --system-site-packages "$DLM_VENV"
      "$DLM_VENV/bin/pip" install --quiet -r requirements.txt
      echo "$(cat requirements.txt requirements-cpu.txt | sha1sum | cut -c1-12)" > "$DLM_VENV/.dlm_bench_installed"
    fi
    export VENV="$DLM_VENV"
    echo "dlm-bench ROCm shell: torch from nixpkgs, HIP arch $PYTORCH_HIP_ARCH, venv $DLM_VENV"
  '';
}
