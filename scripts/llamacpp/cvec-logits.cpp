// Next-token logits of llama.cpp at every position of a token sequence, with control vectors applied the way
// llama-cli's --control-vector-scaled FILE SCALE applies them: common_control_vector_load reads and scales the
// files, llama_set_adapter_cvec installs them for layers 1 .. n_layer (common_init_from_params' defaults).
// PSM Lab's control-vector tests build this against the llama.cpp libraries node-llama-cpp ships
// (scripts/llamacpp/cvec-logits.ts); node-llama-cpp itself exposes no control-vector API.
//
//   cvec-logits BACKEND_DIR MODEL.gguf TOKEN,TOKEN,... [CVEC.gguf SCALE]...
//
// BACKEND_DIR holds ggml's CPU backends (libggml-cpu-*.so), loaded as llama.cpp's tools load them.
//
// Prints one JSON array per line: the logits after each position.
#include "common.h"
#include "ggml-backend.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc < 4 || (argc - 4) % 2 != 0) {
        fprintf(stderr, "usage: %s BACKEND_DIR MODEL.gguf TOKEN,TOKEN,... [CVEC.gguf SCALE]...\n", argv[0]);
        return 2;
    }
    llama_log_set([](ggml_log_level level, const char * text, void *) {
        if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
    }, nullptr);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[2], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[2]); return 1; }

    std::vector<llama_token> tokens;
    std::stringstream ss(argv[3]);
    for (std::string t; std::getline(ss, t, ',');) tokens.push_back((llama_token) std::stoi(t));
    const int n = (int) tokens.size();

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n < 64 ? 64 : n;
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create a context\n"); return 1; }

    std::vector<common_control_vector_load_info> infos;
    for (int i = 4; i + 1 < argc; i += 2) infos.push_back({ strtof(argv[i + 1], nullptr), argv[i] });
    if (!infos.empty()) {
        const common_control_vector_data cv = common_control_vector_load(infos);
        if (cv.n_embd == -1) { fprintf(stderr, "cannot load the control vectors\n"); return 1; }
        if (llama_set_adapter_cvec(ctx, cv.data.data(), cv.data.size(), cv.n_embd, 1, llama_model_n_layer(model))) {
            fprintf(stderr, "cannot apply the control vectors\n");
            return 1;
        }
    }

    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = tokens[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch)) { fprintf(stderr, "llama_decode failed\n"); return 1; }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int i = 0; i < n; i++) {
        const float * logits = llama_get_logits_ith(ctx, i);
        fputc('[', stdout);
        for (int j = 0; j < n_vocab; j++) printf(j ? ",%.9g" : "%.9g", logits[j]);
        fputs("]\n", stdout);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
