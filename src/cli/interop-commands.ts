/** Interop commands: export a model folder as a Hugging Face folder or a GGUF file; import HF folders and GGUF files. */
import type { Command } from 'commander';

export function registerInteropCommands(program: Command): void {
  program
    .command('export')
    .description(
      'Export a model folder as a Hugging Face model folder (--format hf) or a GGUF file for llama.cpp (--format gguf)',
    )
    .requiredOption('--model <dir>', 'PSM Lab model folder (config.json, model.safetensors, tokenizer.json)')
    .requiredOption('--format <format>', 'hf or gguf')
    .requiredOption('--out <path>', 'output folder (hf) or .gguf file (gguf)')
    .option('--dtype <type>', 'GGUF weight matrices as f32 or f16 (norms stay f32)', 'f32')
    .option('--name <name>', 'general.name of the GGUF file (default: the model folder name)')
    .action(async (o: { model: string; format: string; out: string; dtype: string; name?: string }) => {
      const format = o.format.toLowerCase();
      if (format !== 'hf' && format !== 'gguf')
        throw new Error(`--format must be hf or gguf, got "${o.format}"`);
      const dtype = o.dtype.toUpperCase();
      if (dtype !== 'F32' && dtype !== 'F16') throw new Error(`--dtype must be f32 or f16, got "${o.dtype}"`);
      const { exportModelFolder } = await import('../interop/index.ts');
      const s = exportModelFolder(o.model, format, o.out, { dtype, name: o.name });
      process.stdout.write(
        `exported ${s.parameters.toLocaleString('en-US')} parameters as ${s.format === 'hf' ? 'a Hugging Face folder' : 'GGUF'} (${s.architecture}, ${(s.bytes / 1e6).toFixed(2)} MB) to ${s.out}\n`,
      );
      if (s.format === 'gguf') {
        // PSM Lab's own models speak the PSM chat format; a model with its own template chats through the template
        // the GGUF carries (llama-cli's conversation mode).
        const { chatTemplateForFolder } = await import('../interop/chat-template-source.ts');
        const psmFormat = chatTemplateForFolder(o.model).kind === 'psm';
        process.stdout.write(
          psmFormat
            ? `run it with llama.cpp: llama-cli -m ${s.out} --temp 0 -p $'User: Hello\\nAssistant:'  (or: npx node-llama-cpp complete --model ${s.out} --gpu false)\n`
            : `run it with llama.cpp in its own chat template: llama-cli -m ${s.out} --temp 0 -cnv  (or: npx node-llama-cpp chat --model ${s.out} --gpu false)\n`,
        );
      }
    });

  program
    .command('import')
    .description(
      'Import a local Hugging Face folder (Llama 3, SmolLM2, Qwen2.5, Qwen3 or Gemma 3; safetensors, possibly sharded; fp32/fp16/bf16) or a GGUF file (llama, qwen2, qwen3, gemma3; f32/f16/bf16/q8_0) into a PSM Lab model folder',
    )
    .requiredOption('--from <path>', 'Hugging Face model folder or .gguf file')
    .requiredOption('--out <dir>', 'PSM Lab model folder to write')
    .action(async (o: { from: string; out: string }) => {
      const { importModel } = await import('../interop/index.ts');
      const s = importModel(o.from, o.out);
      process.stdout.write(
        `imported ${s.architecture} (${s.parameters.toLocaleString('en-US')} parameters, stored ${s.dtypes.join('/') || '?'}) from ${s.from} to ${s.out}; tokenizer: ${s.tokenizer ?? 'none'}\n`,
      );
      for (const w of s.warnings) process.stderr.write(`warning: ${w}\n`);
    });
}
