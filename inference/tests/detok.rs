//! Incremental detokenization on the fixture's byte-level BPE tokenizer (SmolLM2's and Gemma 3's are
//! checked in their own test files).

mod common;

#[test]
fn incremental_detokenization_equals_whole_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = anshin_inference::loader::load(
        &common::hf_fixture(dir.path()),
        None,
        &candle_core::Device::Cpu,
    )
    .expect("fixture loads");
    common::assert_incremental_text_matches_whole(&m.tokenizer, common::DETOK_TEXT);
}

/// A Llama-2-style SentencePiece tokenizer (Metaspace pieces, a decoder that strips the text's first
/// space): decoding a token on its own drops its space, so the window must start a token earlier.
#[test]
fn incremental_detokenization_equals_whole_decoding_with_a_space_stripping_decoder() {
    use tokenizers::decoders::{DecoderWrapper, fuse::Fuse, sequence::Sequence, strip::Strip};
    use tokenizers::models::{TrainerWrapper, bpe::BPE, bpe::BpeTrainer};
    use tokenizers::normalizers::replace::Replace;
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};

    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, true)));
    let decoder = Sequence::new(vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").expect("replace")),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
    ]);
    tok.with_decoder(Some(decoder));
    let trainer = BpeTrainer::builder()
        .vocab_size(300)
        .show_progress(false)
        .build();
    let corpus = anshin_inference::fixture::CORPUS
        .iter()
        .chain(&["Take one tablet daily with water after meals."]);
    tok.train(&mut TrainerWrapper::BpeTrainer(trainer), corpus)
        .expect("train");
    let json = tok.to_string(false).expect("serialize");
    let tok = anshin_inference::tokenizer::TextTokenizer::from_json(&json, None, None)
        .expect("tokenizer loads");
    common::assert_incremental_text_matches_whole(&tok, "Take one tablet daily with water.");
}
