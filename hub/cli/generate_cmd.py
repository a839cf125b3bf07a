"""``hub generate``: images from a registry-resolved stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer

from hub.cli.output import emit_json, error_line, human_size, out, status, step_progress
from hub.cli.state import context
from hub.core.errors import ExitCode, HubError


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate_command(  # noqa: PLR0913 - the options users expect
        ctx: typer.Context,
        prompt: str = typer.Argument(
            None, help="The prompt; <lora:NAME:W>, <hypernet:NAME:W> and embedding names work."
        ),
        negative: str = typer.Option(None, "--negative", "-n", help="Negative prompt."),
        model: str = typer.Option(None, "--model", "-m", help="The checkpoint (a ref)."),
        lora: list[str] = typer.Option(
            None, "--lora", help="REF[:W] or REF:TE_W:UNET_W (repeatable; any LoRA-family algo)."
        ),
        embedding: list[str] = typer.Option(
            None,
            "--embedding",
            help="An embedding to load (repeatable); use its name in the prompt.",
        ),
        hypernetwork: list[str] = typer.Option(
            None, "--hypernetwork", help="REF[:W] (repeatable)."
        ),
        vae: str = typer.Option(None, "--vae", help="Use this VAE instead of the model's."),
        text_encoder: list[str] = typer.Option(
            None,
            "--text-encoder",
            help="Flux: a CLIP-L or T5-XXL text encoder part (REF, repeatable).",
        ),
        tokenizer: str = typer.Option(
            None, "--tokenizer", help="Flux: the T5 tokenizer part (default: the registered one)."
        ),
        guidance: float = typer.Option(
            None, "--guidance", help="Flux dev: distilled CFG scale (default 3.5)."
        ),
        stack: str = typer.Option(None, "--stack", help="A [stacks.NAME] table of hub.toml."),
        trigger: bool = typer.Option(
            False, "--trigger", help="Add each add-on's trained words to the prompt."
        ),
        steps: int = typer.Option(None, "--steps", help="Denoising steps (default 20)."),
        cfg: float = typer.Option(None, "--cfg", help="CFG scale (default 7)."),
        sampler: str = typer.Option(
            None, "--sampler", help="A1111 name: 'Euler a', 'DPM++ 2M Karras', DDIM, ..."
        ),
        seed: int = typer.Option(None, "--seed", help="Seed (default: random)."),
        width: int = typer.Option(None, "--width", "-W", help="Width (default: the base's)."),
        height: int = typer.Option(None, "--height", "-H", help="Height."),
        clip_skip: int = typer.Option(None, "--clip-skip", help="A1111 Clip skip (1 = none)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, float16, bfloat16."),
        output: Path = typer.Option(
            None, "--output", "-o", help="The PNG to write (with --batch: a folder)."
        ),
        batch: Path = typer.Option(
            None, "--batch", help="Jobs: one prompt per line, a JSON list or TOML [[jobs]]."
        ),
        from_image: Path = typer.Option(
            None,
            "--from",
            help="Re-run what an image records (sd-hub, A1111/Forge, Civitai, ComfyUI, "
            "InvokeAI, Fooocus, NovelAI); the files it names are resolved by hash, then name.",
        ),
        settings: list[str] = typer.Option(
            None, "--set", help="With --from: KEY=VALUE over the image's (steps=30; repeatable)."
        ),
        yes: bool = typer.Option(
            False, "--yes", "-y", help="Install missing files without asking."
        ),
        offline: bool = typer.Option(
            False, "--offline", help="With --from: never ask the share site."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Resolve and check the stack; load nothing."
        ),
        allow_family: bool = typer.Option(
            False, "--allow-family", help="No warning for add-ons of another family."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    ) -> None:
        """Generate images with a model and any set of add-ons, reproducibly."""
        from hub.generate import Hub, Job, read_batch
        from hub.reproduce import apply_settings, parse_settings

        hub = Hub(ctx=context(ctx), device=device, dtype=dtype)
        given = Job(
            prompt=prompt or "",
            negative=negative,
            model=model,
            loras=list(lora or []),
            embeddings=list(embedding or []),
            hypernetworks=list(hypernetwork or []),
            vae=vae,
            text_encoders=list(text_encoder or []),
            tokenizer=tokenizer,
            guidance=guidance,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            seed=seed,
            width=width,
            height=height,
            clip_skip=clip_skip,
            trigger=trigger,
            stack=stack,
        )
        found = None
        if settings and from_image is None:
            raise HubError("--set works with --from", hint="give settings as options: --steps 30")
        if from_image is not None:
            values = parse_settings(list(settings or []))
            found = _from_image(hub, from_image, given, values, yes, offline, dry_run)
            jobs = [apply_settings(found.job, given, values)]
            if not jobs[0].model and not jobs[0].stack:
                raise HubError(
                    f"{from_image}: the {found.tool} image names no checkpoint file",
                    hint="pass --model REF or --set model=REF",
                )
        elif batch is not None:
            jobs = read_batch(batch, given)
        else:
            if not prompt and not stack:
                raise HubError("no prompt", hint='hub generate "a castle" --model NAME')
            jobs = [given]
        jobs = [replace(j, allow_family=j.allow_family or allow_family) for j in jobs]
        if output is not None:
            if batch is not None:
                output.mkdir(parents=True, exist_ok=True)
                jobs = [
                    replace(j, output=j.output or output / f"{i + 1:05d}.png")
                    for i, j in enumerate(jobs)
                ]
            else:
                jobs = [replace(jobs[0], output=output)]
        if found is not None:
            _show_from(found)
        if dry_run and found is not None and found.install:
            if as_json:  # the files to install first: no plan can be checked yet
                emit_json([{"from": found.as_dict(), "job": _job_json(jobs[0])}])
            else:
                out().print(f"job: {_job_json(jobs[0])}", markup=False)
            return
        if dry_run:
            _dry_run(hub, jobs, found, as_json)
            return
        results, failures = _each(jobs, lambda job: _generate(hub, job, quiet, as_json))
        if as_json:
            emit_json(
                [
                    {
                        "path": str(r.path),
                        "infotext": r.infotext,
                        "record": r.record,
                        "timings": r.timings,
                    }
                    | ({"from": found.as_dict()} if found is not None else {})
                    for r in results
                ]
            )
        _fail_if(failures, len(jobs))


def _dry_run(hub: object, jobs: list, found: object, as_json: bool) -> None:
    """Resolve and check every job (nothing loads); show the plans."""
    plans, failures = _each(jobs, hub.plan)
    if as_json:
        extra = {"from": found.as_dict()} if found is not None else {}
        emit_json([_plan_json(p) | extra for p in plans])
    else:
        for p in plans:
            _show_plan(p)
    _fail_if(failures, len(jobs))


def _generate(hub: object, job: object, quiet: bool, as_json: bool) -> object:
    """One image, with a progress display; its path on stdout unless JSON is wanted."""
    with step_progress(not quiet) as (on_stage, on_step):
        result = hub.generate(job, on_step=on_step, on_stage=on_stage)
    for line in result.reports:
        status(line)
    if not as_json:
        out().print(str(result.path), markup=False, highlight=False)
        status(
            f"seed {result.record['settings']['seed']}, {result.timings['total']:.1f}s"
            + ("" if result.reloaded else " (model already loaded)")
        )
    return result


def _each(jobs: list, run: Callable[[object], object]) -> tuple[list, int]:
    """``run`` on every job. Of several jobs, one that fails is reported (an ``error:`` line
    naming it) and the next ones still run; returns the results and the number of failures."""
    results, failures = [], 0
    for n, job in enumerate(jobs, 1):
        try:
            results.append(run(job))
        except HubError as exc:
            if len(jobs) == 1:
                raise
            error_line(f"job {n}: {exc.message}", exc.hint)
            failures += 1
    return results, failures


def _fail_if(failures: int, total: int) -> None:
    if failures:
        status(f"{failures} of {total} jobs failed")
        raise typer.Exit(ExitCode.FAILED)


def _from_image(  # noqa: PLR0913
    hub: object, path: Path, given: object, values: dict, yes: bool, offline: bool, dry_run: bool
) -> object:
    """What an image records, its missing files installed by hash or version id after one
    question listing them all (``-y``: none; no terminal to ask on: an error)."""
    import sys

    from hub.install import install
    from hub.reproduce import from_image

    replaced = frozenset(
        kind
        for kind, key in (("checkpoint", "model"), ("vae", "vae"))
        if values.get(key) or getattr(given, key)
    )
    found = from_image(hub.ctx, path, ask_site=not offline, replaced=replaced)
    if not found.install or dry_run:
        return found
    for f in found.install:
        status(f"to install: {_install_line(f)}")
    if not yes:
        if not sys.stdin.isatty():
            raise HubError(
                f"{path}: {len(found.install)} missing file(s) to install: confirmation needed",
                hint="pass -y to install them",
            )
        if not typer.confirm(f"install these {len(found.install)} file(s)?", err=True):
            raise HubError("cannot re-run without the missing files", hint="pass -y to install")
    for f in found.install:
        result = install(hub.ctx, f.resolution.install)
        art = result.artifact or {}
        status(f"installed {art.get('kind')}:{art.get('name')} ({art.get('path')})")
    again = from_image(hub.ctx, path, ask_site=False, replaced=replaced)
    again.installed = found.install
    return again


def _install_line(f: object) -> str:
    res, how = f.resource, f.resolution
    remote = how.remote or {}
    size = f", {human_size(remote['size'])}" if remote.get("size") else ""
    return (
        f"{res.kind} {res.name or '(unnamed)'}: hub install {how.install} "
        f"({remote.get('source')}: {remote.get('file')}{size})"
    )


def _show_from(found: object) -> None:
    """The image's plan on stderr: tool, files held, files to install, what is ignored."""
    status(f"from {found.path}: {found.tool}")
    for f in found.held:
        art = f.resolution.artifact
        status(f"  {f.resource.kind} {f.resource.name or '(unnamed)'}: {art['kind']}:{art['name']}")
    for f in found.install:
        status(f"  to install: {_install_line(f)}")
    for line in found.ignored:
        status(f"  ignored: {line}")
    for line in found.notes:
        status(f"  note: {line}")


def _job_json(job: object) -> dict:
    keep = ("prompt", "negative", "model", "vae", "loras", "embeddings", "hypernetworks")
    keep += ("steps", "cfg", "sampler", "seed", "width", "height", "clip_skip")
    flux = ("text_encoders", "tokenizer", "guidance")  # only when set
    return {k: getattr(job, k) for k in keep} | {
        k: getattr(job, k) for k in flux if getattr(job, k)
    }


def _plan_json(p: object) -> dict:
    def art(a: dict) -> dict:
        return {"name": a["name"], "kind": a["kind"], "sha256": a["hashes"]["sha256"]}

    return {
        "model": art(p.model),
        "vae": art(p.vae) if p.vae else None,
        "loras": [art(a.art) | {"te": a.te, "unet": a.unet} for a in p.loras],
        "embeddings": [art(a.art) for a in p.embeddings],
        "hypernetworks": [art(a.art) | {"strength": a.unet} for a in p.hypernetworks],
        "prompt": p.request.prompt,
        "negative": p.request.negative,
        "settings": {
            "steps": p.request.steps,
            "cfg": p.request.cfg,
            "sampler": p.request.sampler,
            "schedule": p.request.schedule,
            "seed": p.request.seed,
            "size": [p.request.width, p.request.height],
            "clip_skip": p.request.clip_skip,
        }
        | ({"guidance": p.request.guidance} if p.request.guidance is not None else {}),
        "checks": p.reports,
    } | ({"parts": {slot: art(a) for slot, a in p.parts.items()}} if p.parts else {})


def _show_plan(p: object) -> None:
    data = _plan_json(p)
    out().print(f"model: {data['model']['name']} ({data['model']['sha256'][:10]})", markup=False)
    for a in data["loras"]:
        out().print(f"lora: {a['name']} te={a['te']:g} unet={a['unet']:g}", markup=False)
    for a in data["embeddings"]:
        out().print(f"embedding: {a['name']}", markup=False)
    for a in data["hypernetworks"]:
        out().print(f"hypernetwork: {a['name']} {a['strength']:g}", markup=False)
    for slot, a in data.get("parts", {}).items():
        out().print(f"part {slot}: {a['name']} ({a['sha256'][:10]})", markup=False)
    out().print(f"prompt: {data['prompt']}", markup=False)
    for line in data["checks"]:
        status(line)
